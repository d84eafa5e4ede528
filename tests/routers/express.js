// Express 5 with its default settings (case-insensitive, non-strict routing),
// as an application would mount an admin area:
//   app.use('/admin', adminRouter)  +  a catch-all root handler.
// Each answer names the handler that dispatched the request, so
// tests/path_differential.rs can tell whether a request reached the admin
// code: `path` is what Express matched (baseUrl + path), `raw` the request
// target it received from Envoy. Listens on 127.0.0.1:<free port>, prints {"port": N} as its first
// stdout line, and exits when stdin closes (the test's ChildGuard holds it).
'use strict';
const express = require('express');

const app = express();
const admin = express.Router();
admin.use((req, res) => {
  res.json({ handler: 'admin', path: req.baseUrl + req.path, raw: req.originalUrl });
});
app.use('/admin', admin);
app.use((req, res) => {
  res.json({ handler: 'root', path: req.path, raw: req.originalUrl });
});

const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
