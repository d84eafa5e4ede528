// Test OIDC issuer for portcullis integration tests.
//
// Runs a real `oauth2-mock-server` OAuth2Server (discovery document + JWKS,
// tokens signed by its own keystore) on 127.0.0.1, plus a small control HTTP
// API on a second loopback port that the Rust test harness drives.
//
// Usage: node idp.mjs [--port N] [--control-port N]
//   Port 0 / omitted = pick a free port. Once both listeners are up, exactly
//   one JSON line is written to stdout:
//   {"issuer":"http://127.0.0.1:P","port":P,"control":"http://127.0.0.1:C","control_port":C,"kids":{...}}
//
// Control API (JSON in, JSON out):
//   GET  /health                 -> {"ok":true}
//   GET  /info                   -> {issuer, kids: {RS256, ES256, EdDSA}, jwks, up}
//   POST /mint    {alg?, kid?, claims?, unset?, header?, expiresIn?}
//   POST /mint-batch {count, ...as /mint} -> {tokens: [...]} (each with its own jti)
//                                -> {token, kid}   (signed by the OAuth2Server's keystore)
//   POST /rotate  {alg?}         -> {kid}  new key, published in the JWKS from now on
//   POST /jwks-down              -> closes the OIDC listener (discovery + JWKS unreachable)
//   POST /jwks-up                -> reopens it on the same port
//   POST /attack  {kind, claims?, count?, alg?}
//                                -> {token, tokens?}  hostile tokens (see ATTACKS below)
//   GET  /stats                  -> request counters seen by the OIDC listener
//   POST /stats/reset            -> zero the counters
//   GET  /attacker-jwks          -> JWKS of the attacker's keys (target of the `jku` attack)
//   POST /code-flow {claims?, ttl?, expires_in?, refresh_fails?, client_secret?, tamper_nonce?,
//                    omit_id_token?, userinfo?, token_delay_ms?}
//                                -> how the browser-login endpoints of the OIDC listener behave
//                                   from now on (replaces the previous settings)
//   GET  /code-flow/log          -> {authorize: [query], end_session: [query], token: [{grant_type,
//                                   has_verifier, client_auth, ok, error}], userinfo: [{ok}]}
//
// Browser login (authorization code flow) is oauth2-mock-server's own /authorize, /token,
// /userinfo and /endsession. This file makes the token endpoint as strict as a real issuer
// about what the mock leaves open: a code is single-use and only for the PKCE verifier of
// its challenge (a code issued with a challenge is refused without a verifier), refresh
// tokens must be ones it issued, and a configured client secret must be presented
// (HTTP Basic or form body).
//
// Every token that is meant to be *valid* is produced by oauth2-mock-server's
// own `OAuth2Issuer.buildToken`; only the attack tokens are crafted here.

import { OAuth2Server } from 'oauth2-mock-server';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { createHmac, createPublicKey, randomBytes } from 'node:crypto';
import dc from 'node:diagnostics_channel';
import http from 'node:http';

const ALGS = ['RS256', 'ES256', 'EdDSA'];
const HOST = '127.0.0.1';

function parseArgs(argv) {
  const out = { port: 0, controlPort: 0 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--port') out.port = Number(argv[++i]);
    else if (a === '--control-port') out.controlPort = Number(argv[++i]);
    else {
      process.stderr.write(`idp: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
const server = new OAuth2Server();
const issuer = server.issuer;

// Current signing key per algorithm (rotation replaces the entry).
const currentKid = {};
for (const alg of ALGS) {
  const jwk = await issuer.keys.generate(alg);
  currentKid[alg] = jwk.kid;
}

await server.start(args.port, HOST);
const oidcPort = server.address().port;
// oauth2-mock-server names loopback listeners "localhost"; portcullis must be
// configured with the exact `iss`, so pin the issuer to the numeric address.
const issuerUrl = `http://${HOST}:${oidcPort}`;
issuer.url = issuerUrl;

// ---- request accounting for the OIDC listener --------------------------------
const stats = { requests: 0, jwks_requests: 0, discovery_requests: 0, attacker_jwks_requests: 0 };
let controlPort = 0;
dc.subscribe('http.server.request.start', (msg) => {
  const port = msg.socket?.localPort;
  const path = (msg.request?.url ?? '').split('?')[0];
  if (port === oidcPort) {
    const query = Object.fromEntries(new URL(msg.request?.url ?? '/', 'http://x').searchParams);
    if (path === '/authorize') flowLog.authorize.push(query);
    if (path === '/endsession') flowLog.end_session.push(query);
    // `token_delay_ms`: the token endpoint does its work at once (codes are
    // spent, refresh tokens rotated) but answers late, like an IdP behind a
    // slow network: a client that gives up in between loses the answer.
    if (path === '/token' && flow.token_delay_ms > 0 && msg.response) {
      const res = msg.response;
      const end = res.end.bind(res);
      res.end = (...a) => {
        setTimeout(() => {
          end(...a);
          // Tests wait for this instead of sleeping through the delay.
          flowLog.delayed_answers++;
        }, flow.token_delay_ms);
        return res;
      };
    }
    stats.requests++;
    if (path === '/jwks') stats.jwks_requests++;
    if (path === '/.well-known/openid-configuration') stats.discovery_requests++;
  } else if (port === controlPort && path === '/attacker-jwks') {
    stats.attacker_jwks_requests++;
  }
});

// ---- browser login (authorization code flow) ------------------------------------
let flow = {};
const flowLog = { authorize: [], end_session: [], token: [], userinfo: [], delayed_answers: 0 };
const codes = new Map(); // code -> {pkce: bool}
const refreshTokens = new Set();
const accessTokens = new Set();

function clientAuth(req) {
  const h = req.headers.authorization ?? '';
  if (h.toLowerCase().startsWith('basic ')) {
    const [id, secret] = Buffer.from(h.slice(6), 'base64').toString('utf8').split(':');
    return { kind: 'basic', id: decodeURIComponent(id ?? ''), secret: decodeURIComponent(secret ?? '') };
  }
  if (req.body?.client_secret !== undefined) return { kind: 'post', id: req.body.client_id, secret: req.body.client_secret };
  return { kind: 'none', id: req.body?.client_id };
}

server.service.on('beforeAuthorizeRedirect', (redirect, req) => {
  const code = redirect.url.searchParams.get('code');
  if (code) codes.set(code, { pkce: Boolean(req.query?.code_challenge) });
});

server.service.on('beforeTokenSigning', (token, req) => {
  const grant = req.body?.grant_type;
  if (grant !== 'authorization_code' && grant !== 'refresh_token') return;
  Object.assign(token.payload, flow.claims ?? {});
  if (flow.ttl !== undefined) token.payload.exp = token.payload.iat + flow.ttl;
  if (flow.tamper_nonce && token.payload.nonce !== undefined) token.payload.nonce = 'not-the-nonce-you-sent';
});

server.service.on('beforeResponse', (response, req) => {
  const body = req.body ?? {};
  const grant = body.grant_type;
  if (grant !== 'authorization_code' && grant !== 'refresh_token') return;
  const auth = clientAuth(req);
  const entry = { grant_type: grant, has_verifier: body.code_verifier !== undefined, client_auth: auth.kind, ok: false };
  flowLog.token.push(entry);
  const refuse = (status, error) => {
    response.statusCode = status;
    response.body = { error };
    entry.error = error;
  };
  if (flow.client_secret !== undefined && auth.secret !== flow.client_secret) return refuse(401, 'invalid_client');
  if (grant === 'authorization_code') {
    const info = codes.get(body.code);
    codes.delete(body.code);
    if (!info) return refuse(400, 'invalid_grant');
    if (info.pkce && body.code_verifier === undefined) return refuse(400, 'invalid_grant');
  } else {
    if (flow.refresh_fails || !refreshTokens.has(body.refresh_token)) return refuse(400, 'invalid_grant');
    refreshTokens.delete(body.refresh_token); // rotation: each refresh token works once
  }
  entry.ok = true;
  const out = response.body;
  if (out.refresh_token) refreshTokens.add(out.refresh_token);
  if (out.access_token) accessTokens.add(out.access_token);
  if (flow.expires_in !== undefined) out.expires_in = flow.expires_in;
  if (flow.omit_id_token) delete out.id_token;
});

server.service.on('beforeUserinfo', (response, req) => {
  const h = req.headers.authorization ?? '';
  const ok = h.startsWith('Bearer ') && accessTokens.has(h.slice(7));
  flowLog.userinfo.push({ ok });
  if (!ok) {
    response.statusCode = 401;
    response.body = { error: 'invalid_token' };
  } else if (flow.userinfo) {
    response.body = flow.userinfo;
  }
});

// ---- helpers -----------------------------------------------------------------
const b64url = (buf) => Buffer.from(buf).toString('base64url');
const b64json = (obj) => b64url(JSON.stringify(obj));
const now = () => Math.floor(Date.now() / 1000);

function publicJwk(kid) {
  const jwk = issuer.keys.toJSON(false).find((k) => k.kid === kid);
  if (!jwk) throw new Error(`no such kid ${kid}`);
  return jwk;
}

function algOf(body) {
  const alg = body.alg ?? 'RS256';
  if (!ALGS.includes(alg)) throw new HttpError(400, `unsupported alg ${alg}`);
  return alg;
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** A valid token from the mock server's own keystore. */
async function mint(body = {}) {
  const kid = body.kid ?? currentKid[algOf(body)];
  if (!issuer.keys.toJSON(false).some((k) => k.kid === kid)) throw new HttpError(400, `unknown kid ${kid}`);
  const claims = body.claims ?? {};
  const unset = body.unset ?? [];
  const extraHeader = body.header ?? {};
  const token = await issuer.buildToken({
    kid,
    expiresIn: body.expiresIn ?? 3600,
    scopesOrTransform: (header, payload) => {
      Object.assign(header, extraHeader);
      Object.assign(payload, claims);
      for (const k of unset) delete payload[k];
    },
  });
  return { token, kid };
}

// Attacker-owned keys: never published by the issuer.
const attacker = {};
async function attackerKey(alg) {
  if (!attacker[alg]) {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
    const pub = await exportJWK(publicKey);
    const kid = `attacker-${alg}-${randomBytes(6).toString('hex')}`;
    attacker[alg] = { privateKey, publicJwk: { ...pub, kid, alg, use: 'sig' }, kid };
  }
  return attacker[alg];
}

function basePayload(claims) {
  const t = now();
  return { iss: issuerUrl, sub: 'mallory', aud: 'portcullis', iat: t, nbf: t - 10, exp: t + 3600, ...claims };
}

async function signWithAttacker(alg, header, payload) {
  const key = await attackerKey(alg);
  return new SignJWT(payload).setProtectedHeader({ typ: 'JWT', alg, ...header }).sign(key.privateKey);
}

function hs256(header, payload, secret) {
  const input = `${b64json(header)}.${b64json(payload)}`;
  const sig = createHmac('sha256', secret).update(input).digest();
  return `${input}.${b64url(sig)}`;
}

function flipSignature(token) {
  const [h, p, s] = token.split('.');
  const sig = Buffer.from(s, 'base64url');
  sig[Math.floor(sig.length / 2)] ^= 0x01;
  return `${h}.${p}.${b64url(sig)}`;
}

const ATTACKS = {
  // Unsigned token claiming `alg: none` (body.alg may pick a spelling, e.g. "None").
  'alg-none': async (body) => {
    const header = { alg: body.alg ?? 'none', typ: 'JWT', kid: currentKid.RS256 };
    return `${b64json(header)}.${b64json(basePayload(body.claims))}.`;
  },
  // Algorithm confusion: HMAC-SHA256 keyed with the issuer's public RSA key,
  // kid = the real RS256 kid. Variants: SPKI PEM, PEM without trailing
  // newline, PKCS#1 PEM, the JWK JSON. `token` is the SPKI PEM variant.
  'hs256-with-public-key': async (body) => {
    const jwk = publicJwk(currentKid.RS256);
    const keyObj = createPublicKey({ key: jwk, format: 'jwk' });
    const spki = keyObj.export({ type: 'spki', format: 'pem' });
    const pkcs1 = keyObj.export({ type: 'pkcs1', format: 'pem' });
    const header = { alg: 'HS256', typ: 'JWT', kid: currentKid.RS256 };
    const payload = basePayload(body.claims);
    return [spki, spki.trimEnd(), pkcs1, JSON.stringify(jwk)].map((secret) => hs256(header, payload, secret));
  },
  // Real token from the issuer, one signature bit flipped.
  'bad-signature': async (body) => flipSignature((await mint({ alg: body.alg, claims: { aud: 'portcullis', sub: 'mallory', ...body.claims } })).token),
  // Real token whose payload was edited (privilege escalation) keeping the original signature.
  'payload-tamper': async (body) => {
    const { token } = await mint({ alg: body.alg, claims: { aud: 'portcullis', sub: 'mallory', groups: ['users'] } });
    const [h, , s] = token.split('.');
    return `${h}.${b64json(basePayload({ sub: 'mallory', groups: ['admins'], ...body.claims }))}.${s}`;
  },
  // Signed by a key the issuer never published; each token gets a fresh random kid.
  'unknown-kid': async (body) => {
    const alg = body.alg ?? 'RS256';
    return signWithAttacker(alg, { kid: `forged-${randomBytes(12).toString('hex')}` }, basePayload(body.claims));
  },
  // Signed by an attacker key but claiming the issuer's real RS256 kid.
  'forged-real-kid': async (body) => signWithAttacker('RS256', { kid: currentKid.RS256 }, basePayload(body.claims)),
  // Attacker key embedded in the header (`jwk`), must never be trusted.
  'embedded-jwk': async (body) => {
    const key = await attackerKey('RS256');
    const { kid: _k, alg: _a, use: _u, ...pub } = key.publicJwk;
    return signWithAttacker('RS256', { kid: key.kid, jwk: pub }, basePayload(body.claims));
  },
  // Header `jku` pointing at an attacker JWKS (served by this control API, counted).
  jku: async (body) => {
    const key = await attackerKey('RS256');
    return signWithAttacker('RS256', { kid: key.kid, jku: `http://${HOST}:${controlPort}/attacker-jwks` }, basePayload(body.claims));
  },
  // Genuine signature by the issuer, but `iss` names a different issuer.
  'wrong-issuer': async (body) => (await mint({ alg: body.alg, claims: { aud: 'portcullis', sub: 'mallory', ...body.claims, iss: body.iss ?? 'https://evil.example.invalid' } })).token,
  // Genuine ES256 signature, header kid pointing at the RSA key (alg/key-type mismatch).
  'alg-key-mismatch': async (body) => (await mint({ alg: 'ES256', claims: { aud: 'portcullis', sub: 'mallory', ...body.claims }, header: { kid: currentKid.RS256 } })).token,
};

async function attack(body) {
  const fn = ATTACKS[body.kind];
  if (!fn) throw new HttpError(400, `unknown attack kind ${body.kind}; known: ${Object.keys(ATTACKS).join(', ')}`);
  const count = Math.max(1, Math.min(Number(body.count ?? 1), 10000));
  const tokens = [];
  for (let i = 0; i < count; i++) {
    const t = await fn(body);
    if (Array.isArray(t)) tokens.push(...t);
    else tokens.push(t);
  }
  return { token: tokens[0], tokens };
}

let up = true;
async function jwksDown() {
  if (!up) return;
  up = false;
  // Stop accepting immediately; don't wait forever for lingering sockets.
  const stopped = server.stop();
  await Promise.race([stopped, new Promise((r) => setTimeout(r, 2000))]);
  stopped.catch(() => {});
  issuer.url = issuerUrl; // stop() clears it; keep minting possible while down
}
async function jwksUp() {
  if (up) return;
  await server.start(oidcPort, HOST);
  issuer.url = issuerUrl;
  up = true;
}

// ---- control API -----------------------------------------------------------------
async function readJson(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const raw = Buffer.concat(chunks).toString('utf8');
  if (raw.trim() === '') return {};
  try {
    return JSON.parse(raw);
  } catch {
    throw new HttpError(400, 'body is not JSON');
  }
}

const routes = {
  'GET /health': async () => ({ ok: true }),
  'GET /info': async () => ({ issuer: issuerUrl, kids: currentKid, jwks: issuer.keys.toJSON(false), up }),
  'POST /mint': async (b) => mint(b),
  // Many valid tokens at once (load benchmarks: a cold verification per request).
  // Each gets its own jti, so no two are the same token.
  'POST /mint-batch': async (b) => {
    const count = Math.max(1, Math.min(Number(b.count ?? 1), 100000));
    const tokens = [];
    for (let i = 0; i < count; i++) {
      tokens.push((await mint({ ...b, claims: { ...(b.claims ?? {}), jti: `batch-${i}-${randomBytes(6).toString('hex')}` } })).token);
    }
    return { tokens };
  },
  'POST /rotate': async (b) => {
    const alg = algOf(b);
    const jwk = await issuer.keys.generate(alg);
    currentKid[alg] = jwk.kid;
    return { kid: jwk.kid };
  },
  'POST /jwks-down': async () => {
    await jwksDown();
    return { ok: true, up };
  },
  'POST /jwks-up': async () => {
    await jwksUp();
    return { ok: true, up };
  },
  'POST /attack': async (b) => attack(b),
  'GET /stats': async () => ({ ...stats }),
  'POST /stats/reset': async () => {
    for (const k of Object.keys(stats)) stats[k] = 0;
    return { ...stats };
  },
  'POST /code-flow': async (b) => {
    flow = b;
    return { ok: true };
  },
  'GET /code-flow/log': async () => flowLog,
  'GET /attacker-jwks': async () => {
    await attackerKey('RS256');
    return { keys: Object.values(attacker).map((a) => a.publicJwk) };
  },
};

const control = http.createServer(async (req, res) => {
  const key = `${req.method} ${(req.url ?? '/').split('?')[0]}`;
  const handler = routes[key];
  let status = 200;
  let body;
  try {
    if (!handler) throw new HttpError(404, `no route ${key}`);
    body = await handler(await readJson(req));
  } catch (e) {
    status = e instanceof HttpError ? e.status : 500;
    body = { error: String(e?.message ?? e) };
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
});

await new Promise((resolve, reject) => {
  control.once('error', reject);
  control.listen(args.controlPort, HOST, resolve);
});
controlPort = control.address().port;

process.stdout.write(
  `${JSON.stringify({ issuer: issuerUrl, port: oidcPort, control: `http://${HOST}:${controlPort}`, control_port: controlPort, kids: currentKid })}\n`,
);

const shutdown = () => process.exit(0);
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
// Exit when the parent (test harness) closes our stdin, so a killed test run leaves no orphan.
process.stdin.on('end', shutdown);
process.stdin.on('error', shutdown);
process.stdin.resume();
