// Quickstart OIDC issuer: oauth2-mock-server (discovery, JWKS, /token) with a
// tiny user directory, so tokens look like Dex's: aud = portcullis, email,
// groups. Get a token the standard OAuth2 way:
//   curl -s -d grant_type=password -d username=alice http://127.0.0.1:9400/token
//   curl -s -d grant_type=client_credentials -d client_id=ci-pipeline http://127.0.0.1:9400/token
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
server.service.on('beforeTokenSigning', (token, req) => {
  const body = req.body ?? {};
  if (body.grant_type === 'client_credentials') {
    // Like Dex: a machine token's subject and audience are its client id.
    token.payload.sub = body.client_id;
    token.payload.aud = body.client_id;
    return;
  }
  const user = users[token.payload.sub];
  token.payload.aud = 'portcullis';
  if (user) Object.assign(token.payload, user);
});
await server.start(port, host);
console.log(JSON.stringify({ event: 'idp_ready', issuer: issuerUrl, port }));
