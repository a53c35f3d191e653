#!/usr/bin/env node
// Drive the official @segment/analytics-node client against a running sluice.
//
// Usage: node drive_node.mjs --host URL --write-key KEY --run-id ID --out MANIFEST.json
//                            --node-project DIR   (the npm project holding node_modules)
//
// Makes every kind of call (identify, track, page, screen, group, alias, an
// anonymous-only track, a track with an explicit back-dated timestamp, and a
// track from a client whose clock runs an hour fast), waits for every
// callback, closes the client, and writes a manifest: for every call the
// messageId the client generated and the fields the stored event must carry.
// verify.py checks the server against that manifest. Exits non-zero if the
// client itself reported a failure.

import { createRequire } from 'node:module'
import { writeFileSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

const CLOCK_SKEW_MS = 3600 * 1000 // the "skewed" client's clock runs this far ahead
const SKEWED_EVENT_AGE_MS = 30 * 1000 // its explicit timestamp is this far in its own past
const BACKDATE_MS = 600 * 1000 // the back-dated call happened this long ago

const { values: args } = parseArgs({
  options: {
    host: { type: 'string' },
    'write-key': { type: 'string' },
    'run-id': { type: 'string' },
    out: { type: 'string' },
    'node-project': { type: 'string' },
  },
})
for (const k of ['host', 'write-key', 'run-id', 'out', 'node-project']) {
  if (!args[k]) {
    console.error(`drive_node: --${k} is required`)
    process.exit(2)
  }
}

// Load the pinned package from the scratch npm project (not from a global install).
const projectRequire = createRequire(join(args['node-project'], 'package.json'))
const { Analytics } = projectRequire('@segment/analytics-node')
const pkgVersion = JSON.parse(
  readFileSync(projectRequire.resolve('@segment/analytics-node/package.json'), 'utf8'),
).version

const RealDateAtLoad = globalThis.Date
const rid = args['run-id']
const user = `node-user-${rid}`
const anon = `node-anon-${rid}`
const errors = []
const calls = []
const pending = []

function newClient() {
  const analytics = new Analytics({
    writeKey: args['write-key'],
    host: args.host,
    maxRetries: 2,
    httpRequestTimeout: 10000,
  })
  analytics.on('error', (e) => {
    errors.push(`emitter error ${e.code}: ${e.reason}`)
  })
  return analytics
}

// Call `method` on `client` and record what the stored event must look like.
// The messageId is the one the client generated, taken from the delivery callback.
function call(client, method, params, label, expect, opts = {}) {
  const entry = {
    label,
    messageId: null,
    clientTimestamp: null, // the timestamp the client put on the wire
    expect,
    absent: opts.absent ?? [],
    explicitTimestamp: opts.explicitTimestamp ?? null,
    clockSkewSeconds: opts.clockSkewSeconds ?? 0,
  }
  calls.push(entry)
  pending.push(
    new Promise((resolve) => {
      client[method](params, (err, ctx) => {
        entry.messageId = ctx?.event?.messageId ?? null
        const ts = ctx?.event?.timestamp
        entry.clientTimestamp = ts instanceof RealDateAtLoad ? ts.toISOString() : ts ?? null
        if (err) errors.push(`${label}: delivery failed: ${err}`)
        resolve()
      })
    }),
  )
}

async function main() {
  const client = newClient()

  const traits = {
    email: `zoe-${rid}@example.com`,
    name: 'Zoë Ünïcødé 🚀',
    plan: 'enterprise',
    logins: 42,
    verified: true,
    address: { city: 'Zürich', zip: '8001' },
  }
  call(client, 'identify', { userId: user, traits }, 'identify',
    { type: 'identify', userId: user, traits }, { absent: ['anonymousId'] })

  const props = {
    order_id: `ord-${rid}`,
    revenue: 19.99,
    currency: 'EUR',
    coupon: null,
    products: [{ sku: 'sku-1', quantity: 2 }, { sku: 'sku-2', quantity: 1 }],
  }
  call(client, 'track', { userId: user, event: 'Order Completed', properties: props }, 'track',
    { type: 'track', userId: user, event: 'Order Completed', properties: props },
    { absent: ['anonymousId'] })

  const pageProps = { path: '/pricing', title: 'Pricing', url: 'https://example.com/pricing' }
  call(client, 'page', { userId: user, category: 'Docs', name: 'Pricing', properties: pageProps }, 'page',
    // analytics-node itself copies `category` into properties (see fixtures/wire/README.md)
    { type: 'page', userId: user, name: 'Pricing', category: 'Docs', properties: { ...pageProps, category: 'Docs' } },
    { absent: ['anonymousId'] })

  const screenProps = { variant: 'dark', build: 1234 }
  call(client, 'screen', { userId: user, category: 'Onboarding', name: 'Welcome', properties: screenProps }, 'screen',
    { type: 'screen', userId: user, name: 'Welcome', category: 'Onboarding', properties: screenProps },
    { absent: ['anonymousId'] })

  const groupId = `node-group-${rid}`
  const groupTraits = { name: 'Acme GmbH', industry: 'Manufacturing', employees: 250 }
  call(client, 'group', { userId: user, groupId, traits: groupTraits }, 'group',
    { type: 'group', userId: user, groupId, traits: groupTraits }, { absent: ['anonymousId'] })

  call(client, 'alias', { previousId: anon, userId: user }, 'alias',
    { type: 'alias', previousId: anon, userId: user }, { absent: ['anonymousId'] })

  const anonProps = { section: 'blog', scroll_depth: 0.75 }
  call(client, 'track', { anonymousId: anon, event: 'Article Viewed', properties: anonProps }, 'anonymous track',
    { type: 'track', anonymousId: anon, event: 'Article Viewed', properties: anonProps },
    { absent: ['userId'] })

  // Explicit timestamp 10 minutes in the past (serialised by the client as ...Z, ms).
  const backdated = new Date(Date.now() - BACKDATE_MS)
  const bdProps = { plan: 'pro', interval: 'yearly' }
  call(client, 'track', { userId: user, event: 'Subscription Renewed', properties: bdProps, timestamp: backdated },
    'backdated track',
    { type: 'track', userId: user, event: 'Subscription Renewed', properties: bdProps },
    { absent: ['anonymousId'], explicitTimestamp: backdated.toISOString() })

  await client.closeAndFlush({ timeout: 30000 })

  // A second client in a process whose clock runs an hour fast: every `new Date()`
  // and `Date.now()` (sentAt, messageId) is shifted. The explicit timestamp is read
  // from the same fast clock. sluice must correct the stored timestamp to
  // receivedAt - (sentAt - originalTimestamp) ~ receivedAt - 30 s.
  const RealDate = globalThis.Date
  class SkewedDate extends RealDate {
    constructor(...a) {
      if (a.length === 0) super(RealDate.now() + CLOCK_SKEW_MS)
      else super(...a)
    }
    static now() {
      return RealDate.now() + CLOCK_SKEW_MS
    }
  }
  globalThis.Date = SkewedDate
  try {
    const skewed = newClient()
    const skTs = new Date(Date.now() - SKEWED_EVENT_AGE_MS)
    const skProps = { clock: 'fast' }
    call(skewed, 'track', { userId: user, event: 'Clock Skew Probe', properties: skProps, timestamp: skTs },
      'skewed-clock track',
      { type: 'track', userId: user, event: 'Clock Skew Probe', properties: skProps },
      { absent: ['anonymousId'], explicitTimestamp: skTs.toISOString(), clockSkewSeconds: CLOCK_SKEW_MS / 1000 })
    await skewed.closeAndFlush({ timeout: 30000 })
  } finally {
    globalThis.Date = RealDate
  }

  await Promise.all(pending)
  for (const c of calls) {
    if (!c.messageId) errors.push(`${c.label}: callback gave no messageId`)
  }

  const manifest = {
    client: 'node',
    library: { name: '@segment/analytics-node', version: pkgVersion },
    errors,
    calls,
  }
  writeFileSync(args.out, JSON.stringify(manifest, null, 2))
  console.log(`drive_node: ${calls.length} calls made, ${errors.length} client errors`)
  return errors.length ? 1 : 0
}

main().then(
  (rc) => process.exit(rc),
  (err) => {
    console.error(err)
    process.exit(2)
  },
)
