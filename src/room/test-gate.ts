/**
 * A test hook that holds calls until it is released (`Room.holdDirectIn`): it makes an RPC slow on
 * purpose, so that a test sees what happens meanwhile instead of racing it. Open unless a test holds it.
 */
export class TestGate {
  #held: { passed: Promise<void>; release: () => void } | undefined;

  hold(): void {
    if (this.#held) return;
    let release: () => void = () => undefined;
    const passed = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.#held = { passed, release };
  }

  release(): void {
    this.#held?.release();
    this.#held = undefined;
  }

  /** Settles once the gate is open: at once (`undefined`) unless held. */
  passed(): Promise<void> | undefined {
    return this.#held?.passed;
  }
}
