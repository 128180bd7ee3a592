/**
 * Runs in every workerd test file. A room announces a `leave` PRESENCE_GRACE_MS after a user's last
 * connection closes (300 ms here), from a timer: let those timers run out before the file ends, or
 * what the room logs then reaches a test runner that is already tearing the file down.
 */
import { afterAll } from "vitest";
import { settle } from "./helpers";

afterAll(() => settle(500));
