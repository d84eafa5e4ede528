// The quickstart's browser login, driven and checked (run.sh --once; run.sh
// without --once runs it too, to show the answers):
//   1. open http://127.0.0.1:8080/app/ -> portcullis sends the browser to the IdP's login page
//   2. sign in as alice -> the IdP -> portcullis' callback -> back on /app/ with a session cookie
//   3. the echo upstream shows alice's identity (and no session cookie)
//   4. /oauth2/logout -> the IdP's end_session -> /app/ -> the login page again
//
//   node quickstart/browser.mjs [--scripted]     (or QUICKSTART_BROWSER=scripted)
//
// A real headless Chromium (playwright-core + /usr/bin/chromium, or $CHROMIUM) when
// one is installed; otherwise, or with --scripted, a scripted client that follows the
// same redirects, keeps cookies as a browser does and posts the same form.
// Prints what happens; exits 1 when an answer is not the expected one.
import { existsSync } from 'node:fs';
import http from 'node:http';

const APP = 'http://127.0.0.1:8080/app/';
const LOGOUT = 'http://127.0.0.1:8080/oauth2/logout';
const IDP = 'http://127.0.0.1:9400';
const COOKIE = '__Host-portcullis';

const scriptedOnly = process.argv.includes('--scripted') || process.env.QUICKSTART_BROWSER === 'scripted';
let failed = false;
function expect(ok, what) {
  if (!ok) {
    console.log(`  !! ${what}`);
    failed = true;
  }
}

// --- a real browser -------------------------------------------------------------
async function chromium() {
  const exe = process.env.CHROMIUM ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
  if (!exe || scriptedOnly) return null;
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: exe,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  return {
    name: `headless Chromium (${browser.version()})`,
    async open(url) {
      await page.goto(url);
      return { url: page.url(), text: await page.content() };
    },
    async login(user, password) {
      await page.fill('#username', user);
      await page.fill('#password', password);
      await Promise.all([page.waitForURL(`${APP}**`), page.click('button[type=submit]')]);
      return { url: page.url(), text: await page.innerText('body') };
    },
    async cookie(name) {
      return (await context.cookies()).find((c) => c.name === name);
    },
    close: () => browser.close(),
  };
}

// --- a scripted client: redirects, cookies (host-only, Secure allowed on loopback), forms ---
// node:http rather than fetch: fetch sends `Sec-Fetch-Mode: cors`, which is an XHR, not a
// navigation, and portcullis rightly answers those 401 instead of redirecting to a login.
function request(url, method, headers, body) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : String(body);
    if (payload !== undefined) headers['content-length'] = Buffer.byteLength(payload);
    const req = http.request(url, { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () =>
        resolve({ status: res.statusCode, location: res.headers.location, setCookies: res.headers['set-cookie'] ?? [], text }),
      );
    });
    req.on('error', reject);
    req.end(payload);
  });
}

function scripted(note) {
  const jar = new Map(); // name -> {value, httpOnly, secure}
  let form = null; // the last login form: {action, fields}
  async function go(url, init = {}) {
    for (let hops = 0; hops < 10; hops++) {
      const headers = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8', ...(init.headers ?? {}) };
      if (jar.size) headers.cookie = [...jar].map(([n, c]) => `${n}=${c.value}`).join('; ');
      const res = await request(url, init.method ?? 'GET', headers, init.body);
      for (const sc of res.setCookies) {
        const [pair, ...attrs] = sc.split(';').map((s) => s.trim());
        const i = pair.indexOf('=');
        const name = pair.slice(0, i);
        const flags = attrs.map((a) => a.toLowerCase());
        if (flags.includes('max-age=0')) jar.delete(name);
        else jar.set(name, { value: pair.slice(i + 1), httpOnly: flags.includes('httponly'), secure: flags.includes('secure') });
      }
      const location = res.location;
      if (res.status >= 300 && res.status < 400 && location) {
        url = new URL(location, url).href;
        init = {};
        continue;
      }
      const text = res.text;
      const action = text.match(/<form method="post" action="([^"]+)"/);
      if (action) {
        const fields = {};
        for (const m of text.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
          fields[m[1]] = m[2].replace(/&#(\d+);/g, (_, c) => String.fromCharCode(Number(c)));
        }
        form = { action: new URL(action[1], url).href, fields };
      }
      return { url, text };
    }
    throw new Error(`too many redirects from ${url}`);
  }
  return {
    name: `a scripted client${note}`,
    open: (url) => go(url),
    login(user, password) {
      const body = new URLSearchParams({ ...form.fields, username: user, password });
      return go(form.action, { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    },
    cookie: async (name) => (jar.has(name) ? { name, ...jar.get(name) } : undefined),
    close: async () => {},
  };
}

let b = null;
try {
  b = await chromium();
} catch (e) {
  b = false;
  console.log(`(Chromium did not start: ${String(e?.message ?? e).split('\n')[0]}; using the scripted client)`);
}
if (!b) b = scripted(scriptedOnly || b === false ? '' : '; no Chromium found (apt-get install chromium for a real one)');
console.log(`(${b.name})`);
try {
  console.log(`\n# Open ${APP}: no session, so portcullis redirects the browser to the IdP's login page`);
  let r = await b.open(APP);
  console.log(`  -> ${r.url.split('?')[0]}?response_type=code&client_id=portcullis-web&…&code_challenge_method=S256`);
  expect(r.url.startsWith(`${IDP}/authorize?`), `expected the IdP's /authorize, got ${r.url}`);
  expect(r.text.includes('<title>Quickstart IdP: sign in</title>'), 'expected the login page');
  const q = new URL(r.url).searchParams;
  expect(q.get('code_challenge_method') === 'S256' && q.get('redirect_uri') === 'http://127.0.0.1:8080/oauth2/callback',
    'expected PKCE S256 and the callback http://127.0.0.1:8080/oauth2/callback');

  console.log('\n# Sign in as alice (password alice): the IdP -> /oauth2/callback -> back to /app/');
  r = await b.login('alice', 'alice');
  console.log(`  -> ${r.url}`);
  expect(r.url === APP, `expected to be back on ${APP}, got ${r.url}`);
  const session = await b.cookie(COOKIE);
  expect(session?.httpOnly && session?.secure, `expected an HttpOnly, Secure ${COOKIE} cookie`);
  console.log(`  cookie ${COOKIE}: ${session ? `${session.value.length} bytes, sealed${session.httpOnly ? ', HttpOnly' : ''}${session.secure ? ', Secure' : ''}` : 'missing'}`);
  let echo = {};
  try {
    echo = JSON.parse(r.text.replace(/^[^{]*/, '').replace(/[^}]*$/, ''));
  } catch {
    expect(false, `expected the echo's JSON, got ${r.text.slice(0, 200)}`);
  }
  const h = echo.headers ?? {};
  console.log('  the echo upstream received:');
  for (const k of ['x-user-id', 'x-auth-request-email', 'x-auth-request-groups', 'cookie']) {
    if (h[k]) console.log(`    ${JSON.stringify(k)}: ${JSON.stringify(h[k])}`);
  }
  expect(JSON.stringify(h['x-user-id']) === '["alice@example.com"]', 'expected x-user-id alice@example.com');
  expect(JSON.stringify(h['x-auth-request-groups']) === '["admins,dev"]', 'expected x-auth-request-groups admins,dev');
  expect(!JSON.stringify(h.cookie ?? '').includes(COOKIE), 'the session cookie reached the upstream');

  console.log(`\n# Log out: ${LOGOUT} -> the IdP's end_session -> /app/ -> the login page again`);
  r = await b.open(LOGOUT);
  console.log(`  -> ${r.url.split('?')[0]} (login page), cookie ${COOKIE}: ${(await b.cookie(COOKIE)) ? 'still set' : 'cleared'}`);
  expect(r.url.startsWith(`${IDP}/authorize?`) && r.text.includes('Quickstart IdP: sign in'), 'expected the login page after logout');
  expect(!(await b.cookie(COOKIE)), 'expected the session cookie to be cleared');
} catch (e) {
  console.log(`  !! ${e?.message ?? e}`);
  failed = true;
} finally {
  await b.close();
}
process.exit(failed ? 1 : 0);
