#!/usr/bin/env node
// The test pages' web server: a tiny static server on 127.0.0.1, on another port (so another
// origin) than sluice, so every request the pages make to sluice is cross-origin as on a real site.
//
// Usage: node pages.mjs --root DIR --analytics-next FILE [--port N]
//   GET /<name>.html             files from DIR (run.mjs writes the pages there)
//   GET /vendor/analytics-next.js  the pinned @segment/analytics-next UMD build (FILE)
// Prints `listening on http://127.0.0.1:PORT` once it accepts connections.

import { createServer } from 'node:http'
import { readFile } from 'node:fs/promises'
import { join, normalize, extname } from 'node:path'
import { parseArgs } from 'node:util'

const { values: args } = parseArgs({
  options: {
    root: { type: 'string' },
    'analytics-next': { type: 'string' },
    port: { type: 'string', default: '0' },
  },
})
if (!args.root || !args['analytics-next']) {
  console.error('pages.mjs: --root and --analytics-next are required')
  process.exit(2)
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'application/javascript; charset=utf-8' }

const server = createServer(async (req, res) => {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname)
  let file
  if (path === '/vendor/analytics-next.js') file = args['analytics-next']
  else if (/^\/[\w.-]+\.html$/.test(path)) file = join(args.root, normalize(path))
  if (req.method !== 'GET' || !file) {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n')
    return
  }
  try {
    const body = await readFile(file)
    res.writeHead(200, {
      'Content-Type': TYPES[extname(file)] || 'application/octet-stream',
      'Cache-Control': 'no-store',
    })
    res.end(body)
  } catch {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n')
  }
})

server.listen(Number(args.port), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`)
})
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)))
