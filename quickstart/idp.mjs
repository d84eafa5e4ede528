// Quickstart OIDC issuer: oauth2-mock-server (discovery, JWKS, /token,
// /authorize, /endsession) with a tiny user directory, so tokens look like
// Dex's: aud = portcullis, email, groups.
//
// Tokens the standard OAuth2 way:
//   curl -s -d grant_type=password -d username=alice http://127.0.0.1:9400/token
//   curl -s -d grant_type=client_credentials -d client_id=ci-pipeline http://127.0.0.1:9400/token
//
// Browser login (authorization code + PKCE, what portcullis does for /app/):
// GET /authorize shows a login form (users below, password = user name);
// POST /login checks it and sends the browser back to /authorize with a
// one-time ticket, where oauth2-mock-server issues the code. The code's
// tokens (access, ID, refresh) are for the user who logged in.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { OAuth2Server } from 'oauth2-mock-server';

const port = Number(process.env.IDP_PORT ?? 9400);
const host = process.env.IDP_HOST ?? '127.0.0.1';
// The `iss` portcullis must be configured with; defaults to the listen address.
const issuerUrl = process.env.IDP_ISSUER ?? `http://${host}:${port}`;

const users = {
  alice: { email: 'alice@example.com', groups: ['admins', 'dev'] },
  bob: { email: 'bob@example.com', groups: ['dev'] },
};

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
server.issuer.url = issuerUrl;
const service = server.service;

// Browser login state: ticket (after the form) -> user -> code -> refresh token.
const tickets = new Map(); // ticket -> user, single use, 2 minutes
const codeUser = new Map(); // code -> user
const refreshUser = new Map(); // refresh token -> user

service.on('beforeAuthorizeRedirect', (redirect, req) => {
  const user = tickets.get(req.query?.login_ticket);
  tickets.delete(req.query?.login_ticket);
  const code = redirect.url.searchParams.get('code');
  if (code && user) codeUser.set(code, user);
});

service.on('beforeTokenSigning', (token, req) => {
  const body = req.body ?? {};
  if (body.grant_type === 'client_credentials') {
    // Like Dex: a machine token's subject and audience are its client id.
    token.payload.sub = body.client_id;
    token.payload.aud = body.client_id;
    return;
  }
  let name = token.payload.sub;
  if (body.grant_type === 'authorization_code') name = codeUser.get(body.code);
  if (body.grant_type === 'refresh_token') name = refreshUser.get(body.refresh_token);
  // The ID token (no `scope`) keeps aud = the login's client id; access tokens are for portcullis.
  if ('scope' in token.payload) token.payload.aud = 'portcullis';
  if (name !== undefined) token.payload.sub = name;
  const user = users[name];
  if (user) Object.assign(token.payload, user);
});

service.on('beforeResponse', (response, req) => {
  const body = req.body ?? {};
  let name;
  if (body.grant_type === 'authorization_code') {
    name = codeUser.get(body.code);
    codeUser.delete(body.code);
  } else if (body.grant_type === 'refresh_token') {
    name = refreshUser.get(body.refresh_token);
    refreshUser.delete(body.refresh_token);
  } else {
    return;
  }
  if (name === undefined) {
    response.statusCode = 400;
    response.body = { error: 'invalid_grant' };
    return;
  }
  if (response.body.refresh_token) refreshUser.set(response.body.refresh_token, name);
});

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(query, error) {
  const hidden = [...new URLSearchParams(query)]
    .filter(([k]) => k !== 'login_ticket')
    .map(([k, v]) => `<input type="hidden" name="${esc(k)}" value="${esc(v)}">`)
    .join('\n      ');
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Quickstart IdP: sign in</title>
  <style>
    body { font-family: system-ui, sans-serif; background: #f4f4f6; display: grid; place-items: center; min-height: 90vh; }
    form { background: #fff; padding: 2em; border-radius: 8px; box-shadow: 0 1px 4px #0002; width: 18em; }
    label, input, button { display: block; width: 100%; box-sizing: border-box; }
    input { margin: .3em 0 1em; padding: .5em; }
    button { padding: .6em; }
    .error { color: #b00; }
    p.hint { color: #666; font-size: .9em; }
  </style>
</head>
<body>
  <form method="post" action="/login">
    <h1>Sign in</h1>
    <p class="hint">Quickstart IdP (${esc(issuerUrl)}). Users: <b>alice</b> (admins, dev), <b>bob</b> (dev);
      the password is the user name.</p>
    ${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
    <label for="username">User name</label>
    <input id="username" name="username" autocomplete="username" autofocus required>
    <label for="password">Password</label>
    <input id="password" name="password" type="password" autocomplete="current-password" required>
    ${hidden}
    <button type="submit">Sign in</button>
  </form>
</body>
</html>
`;
}

function html(res, status, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(body);
}

async function readForm(req) {
  let raw = '';
  for await (const chunk of req) {
    raw += chunk;
    if (raw.length > 16384) break;
  }
  return new URLSearchParams(raw);
}

const handle = service.requestHandler;
const listener = http.createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', issuerUrl);
  try {
    // The authorization request: without a fresh ticket, the login form.
    if (req.method === 'GET' && url.pathname === '/authorize' && !tickets.has(url.searchParams.get('login_ticket'))) {
      return html(res, 200, loginPage(url.search));
    }
    if (req.method === 'POST' && url.pathname === '/login') {
      const form = await readForm(req);
      const name = form.get('username') ?? '';
      const password = form.get('password') ?? '';
      form.delete('username');
      form.delete('password');
      if (!Object.hasOwn(users, name) || password !== name) {
        return html(res, 401, loginPage(form.toString(), 'Unknown user or wrong password.'));
      }
      const ticket = randomUUID();
      tickets.set(ticket, name);
      setTimeout(() => tickets.delete(ticket), 120_000).unref();
      form.set('login_ticket', ticket);
      console.log(JSON.stringify({ event: 'login', user: name }));
      res.writeHead(302, { location: `/authorize?${form}`, 'cache-control': 'no-store' });
      return res.end();
    }
  } catch (e) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    return res.end(`bad request: ${e?.message ?? e}\n`);
  }
  return handle(req, res);
});
await new Promise((resolve, reject) => {
  listener.once('error', reject);
  listener.listen(port, host, resolve);
});
console.log(JSON.stringify({ event: 'idp_ready', issuer: issuerUrl, port }));
