// The JWT secret `npm run dev` gives the local Worker, and `npm run token` signs with.
// Dev only: it is public (it is in this repository). It never reaches wrangler.toml, so
// `wrangler deploy` cannot ship it; production sets its own with `wrangler secret put JWT_SECRET`.
export const DEV_JWT_SECRET = "edge-rooms-local-dev-secret-do-not-deploy-0123456789";
