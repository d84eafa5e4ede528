// Echo upstream: answers every request with the method, path and the headers
// it received, so you can see what portcullis let through and injected.
import http from 'node:http';

const port = Number(process.env.ECHO_PORT ?? 8081);
const host = process.env.ECHO_HOST ?? '127.0.0.1';
http
  .createServer((req, res) => {
    const headers = {};
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i].toLowerCase();
      (headers[name] ??= []).push(req.rawHeaders[i + 1]);
    }
    res.setHeader('content-type', 'application/json');
    // One header per line keeps the answer readable in a terminal.
    const lines = Object.entries(headers).map(([k, v]) => `    ${JSON.stringify(k)}: ${JSON.stringify(v)}`);
    res.end(`{"method": ${JSON.stringify(req.method)}, "path": ${JSON.stringify(req.url)}, "headers": {\n${lines.join(',\n')}\n}}\n`);
  })
  .listen(port, host, () => console.log(JSON.stringify({ event: 'echo_ready', port })));
