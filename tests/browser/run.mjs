#!/usr/bin/env node
// Browser tests: real headless Chromium (Debian's /usr/bin/chromium, driven by the pinned
// playwright-core) loads pages from the page server (pages.mjs, another origin than sluice) that
// run the pinned @segment/analytics-next or sluice's own /sluice.js through the footer snippet,
// and every check asserts, through the admin events API, what sluice stored.
//
// The dashboard's tests (sign-in, sources, the live debugger, a Customer.io destination against
// the in-repo test server, keyboard use, a narrow screen, no secret in any page) are in
// dashboard.mjs.
//
// Usage (run.sh passes all of it):
//   node run.mjs --sluice URL --token ADMIN_TOKEN --pages URL --pages-dir DIR
//                --node-project DIR --asset crates/sluice-collector/assets/sluice.js
//                --cio URL --artifacts DIR --summary FILE [--only SUBSTRING]
// Prints PASS/FAIL per test and writes {"passed":N,"failed":M} to --summary; run.sh prints
// the closing `browser: N passed, M failed` line. When a test fails, a full-page screenshot of
// each page it had open is saved as DIR/<test-name>-<n>.png.

import { createRequire } from 'node:module'
import { writeFileSync, readFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { gzipSync } from 'node:zlib'
import http from 'node:http'
import { dashboardTests } from './dashboard.mjs'

const { values: args } = parseArgs({
  options: {
    sluice: { type: 'string' },
    token: { type: 'string' },
    pages: { type: 'string' },
    'pages-dir': { type: 'string' },
    'node-project': { type: 'string' },
    asset: { type: 'string' },
    cio: { type: 'string' },
    artifacts: { type: 'string' },
    summary: { type: 'string' },
    only: { type: 'string' },
  },
})
for (const k of ['sluice', 'token', 'pages', 'pages-dir', 'node-project', 'asset', 'cio', 'artifacts', 'summary']) {
  if (!args[k]) {
    console.error(`run.mjs: --${k} is required`)
    process.exit(2)
  }
}

// The pinned driver, from the scratch npm project (not from a global install).
const { chromium } = createRequire(join(args['node-project'], 'package.json'))('playwright-core')

const SLUICE = args.sluice.replace(/\/$/, '')
const PAGES = args.pages.replace(/\/$/, '')
const SLUICE_ORIGIN = new URL(SLUICE).origin
const PAGES_ORIGIN = new URL(PAGES).origin
const CIO = args.cio.replace(/\/$/, '') // the Customer.io-compatible test server
const RUN = `${Date.now().toString(36)}-${process.pid}`
const EVENTS_TIMEOUT = Number(process.env.BROWSER_EVENTS_TIMEOUT || 30) * 1000
const TEST_TIMEOUT = Number(process.env.BROWSER_TEST_TIMEOUT || 120) * 1000
const GZIP_BUDGET = 6144
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
]

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

class Failure extends Error {}
function check(ok, message) {
  if (!ok) throw new Failure(message)
}
function checkEq(actual, expected, what) {
  const a = JSON.stringify(actual)
  const e = JSON.stringify(expected)
  check(a === e, `${what}: got ${a}, want ${e}`)
}
const short = (v, n = 400) => {
  const s = typeof v === 'string' ? v : JSON.stringify(v)
  return s && s.length > n ? s.slice(0, n) + '…' : s
}

// ------------------------------------------------------------------ sluice admin API

async function admin(method, path, body) {
  const headers = { Authorization: `Bearer ${args.token}` }
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  const r = await fetch(SLUICE + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await r.text()
  if (!r.ok) throw new Failure(`${method} ${path}: ${r.status} ${short(text)}`)
  return text ? JSON.parse(text) : null
}

let sourceCount = 0
async function createSource(label, extra = {}) {
  return admin('POST', '/api/v1/sources', {
    name: `browser-${label}-${RUN}-${++sourceCount}`,
    kind: 'web',
    allowed_origins: [PAGES_ORIGIN],
    ...extra,
  })
}

// Stored events oldest first (the API answers newest first), and the rejected ones.
async function stored(source) {
  const body = await admin('GET', `/api/v1/sources/${source.id}/events?limit=1000`)
  return {
    events: body.events.slice().sort((a, b) => a.seq - b.seq),
    rejected: body.rejected || [],
  }
}

// Polls the events API until `done(events)` holds (deadline, never a blind sleep).
async function waitStored(source, what, done, timeout = EVENTS_TIMEOUT) {
  const deadline = Date.now() + timeout
  let last
  for (;;) {
    last = await stored(source)
    if (done(last.events.map((e) => e.event), last)) return last
    if (Date.now() > deadline) {
      const seen = last.events.map((e) => e.event.type + (e.event.event ? `:${e.event.event}` : ''))
      throw new Failure(
        `timed out after ${timeout / 1000} s waiting for ${what}; stored ${last.events.length}: ${short(seen, 600)}` +
          (last.rejected.length ? `; rejected: ${short(last.rejected)}` : ''),
      )
    }
    await sleep(150)
  }
}

async function waitUntil(what, fn, timeout = EVENTS_TIMEOUT) {
  const deadline = Date.now() + timeout
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > deadline) throw new Failure(`timed out after ${timeout / 1000} s waiting for ${what}`)
    await sleep(100)
  }
}

// The sum of sluice_http_requests_total{status="<status>"} in /metrics.
async function metricCount(status) {
  const r = await fetch(`${SLUICE}/metrics`, { headers: { Authorization: `Bearer ${args.token}` } })
  if (!r.ok) throw new Failure(`GET /metrics: ${r.status}`)
  let sum = 0
  for (const line of (await r.text()).split('\n')) {
    if (line.startsWith('sluice_http_requests_total{') && line.includes(`status="${status}"`)) {
      sum += Number(line.trim().split(/\s+/).pop()) || 0
    }
  }
  return sum
}

// ------------------------------------------------------------------ pages and the network log

function writePage(name, title, body) {
  const file = `${name}-${RUN}.html`
  writeFileSync(
    join(args['pages-dir'], file),
    `<!doctype html>\n<html>\n<head><meta charset="utf-8"><title>${title}</title></head>\n<body>\n` +
      `<h1>${title}</h1>\n${body}\n</body>\n</html>\n`,
  )
  return `${PAGES}/${file}`
}

// A page with the footer snippet from GET /api/v1/sources/{id}/snippet, pasted as is.
async function snippetPage(name, source, extraScript = '') {
  const s = await admin('GET', `/api/v1/sources/${source.id}/snippet`)
  check(typeof s.snippet === 'string' && s.snippet.includes('<script'), `snippet: ${short(s)}`)
  checkEq(s.write_key, source.write_key, 'snippet write_key')
  check(s.snippet.includes(source.write_key), 'the snippet does not carry the write key')
  check(s.snippet.includes(`${s.host}/sluice.js`), `the snippet does not load ${s.host}/sluice.js`)
  check(!s.snippet.includes('{{'), 'the snippet has unfilled placeholders')
  return writePage(name, `sluice.js ${name}`, s.snippet + (extraScript ? `\n<script>\n${extraScript}\n</script>` : ''))
}

function analyticsNextPage(name, source, options) {
  // Only writeKey and cdnURL: where events go comes from the settings sluice serves.
  const settings = { writeKey: source.write_key, cdnURL: SLUICE }
  return writePage(
    name,
    `analytics-next ${name}`,
    `<script src="/vendor/analytics-next.js"></script>
<script>
  window.loadError = null
  window.analytics = AnalyticsNext.AnalyticsBrowser.load(${JSON.stringify(settings)}, ${JSON.stringify(options || {})})
  window.loaded = window.analytics.then(
    function () { return true },
    function (e) { window.loadError = String((e && e.message) || e); return false })
</script>`,
  )
}

const allRequests = [] // every URL any test page requested

// Records every request, response and failure in a browser context.
function watch(context) {
  const log = []
  context.on('request', (r) => {
    allRequests.push(r.url())
    log.push({ kind: 'request', url: r.url(), method: r.method(), headers: r.headers(), body: r.postData(), t: Date.now() })
  })
  context.on('response', (r) =>
    log.push({ kind: 'response', url: r.url(), method: r.request().method(), status: r.status(), headers: r.headers(), t: Date.now() }),
  )
  context.on('requestfailed', (r) =>
    log.push({ kind: 'failed', url: r.url(), method: r.method(), error: (r.failure() || {}).errorText, t: Date.now() }),
  )
  return log
}

function isBatch(entry) {
  return entry.url === `${SLUICE}/v1/batch` && entry.method === 'POST'
}

function thirdParty(urls) {
  return urls.filter((u) => /^https?:/.test(u) && ![SLUICE_ORIGIN, PAGES_ORIGIN].includes(new URL(u).origin))
}

// Every answer sluice gave the page was a success (nothing the page asked for was missing).
function checkSluiceAnswers(log) {
  const bad = log.filter((e) => e.kind === 'response' && e.url.startsWith(SLUICE_ORIGIN) && e.status >= 400)
  check(bad.length === 0, `sluice answered ${short(bad.map((e) => `${e.status} ${e.method} ${e.url}`))}`)
  const failed = log.filter((e) => e.kind === 'failed')
  check(failed.length === 0, `failed requests: ${short(failed.map((e) => `${e.method} ${e.url} ${e.error}`))}`)
}

function checkNoThirdParty(log) {
  const others = thirdParty(log.filter((e) => e.kind === 'request').map((e) => e.url))
  check(others.length === 0, `requests to other hosts: ${short(others)}`)
}

async function openPage(context, url) {
  const page = await context.newPage()
  const errors = []
  page.on('pageerror', (e) => errors.push(String(e)))
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') errors.push(`console.${m.type()}: ${m.text()}`)
  })
  page.errors = errors
  if (url) await page.goto(url)
  return page
}

function localQueue(page, writeKey) {
  return page.evaluate((k) => JSON.parse(localStorage.getItem('sluice_queue:' + k) || '[]'), writeKey)
}

// ------------------------------------------------------------------ event checks

function checkCommon(e, library, what) {
  check(typeof e.messageId === 'string' && e.messageId.length > 0, `${what}: no messageId`)
  check(typeof e.timestamp === 'string' && !Number.isNaN(Date.parse(e.timestamp)), `${what}: timestamp ${e.timestamp}`)
  check(typeof e.anonymousId === 'string' && e.anonymousId.length > 0, `${what}: no anonymousId`)
  check(!('writeKey' in e), `${what}: the stored event kept writeKey`)
  const c = e.context || {}
  checkEq(c.library && c.library.name, library, `${what}: context.library.name`)
  check(typeof (c.library && c.library.version) === 'string', `${what}: context.library.version ${short(c.library)}`)
  check(typeof c.userAgent === 'string' && c.userAgent.includes('Chrome'), `${what}: context.userAgent ${c.userAgent}`)
  check(typeof c.locale === 'string' && c.locale.length > 0, `${what}: context.locale ${c.locale}`)
  const p = c.page || {}
  for (const k of ['path', 'referrer', 'search', 'title', 'url']) check(k in p, `${what}: context.page.${k} missing: ${short(p)}`)
}

const uuidV4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

function countBy(events, key) {
  const m = new Map()
  for (const e of events) m.set(key(e), (m.get(key(e)) || 0) + 1)
  return m
}

// ------------------------------------------------------------------ tests

const tests = []
// `contextOptions` (optional): what the test's fresh browser context is created with.
const test = (name, fn, contextOptions = {}) => tests.push({ name, fn, contextOptions })

async function analyticsNextCalls(page, tag, parallel) {
  const ok = await page.evaluate(() => window.loaded)
  check(ok, `analytics-next did not load: ${await page.evaluate(() => window.loadError)}`)
  await page.evaluate(
    async ({ tag, parallel }) => {
      const a = window.analytics
      // alias before identify: once a user is identified, analytics-next puts that user's id in
      // every event's userId, alias included.
      const calls = [
        () => a.page('Docs', 'Intro', { tag }),
        () => a.alias(`anx-user-${tag}`, `anx-visitor-${tag}`),
        () => a.identify(`anx-user-${tag}`, { email: 'anx@example.com', tag }),
        () => a.track('Order Completed', { tag, total: 42.5, items: [1, 2] }),
        () => a.group(`anx-org-${tag}`, { name: 'Acme', tag }),
      ]
      if (parallel) await Promise.all(calls.map((c) => c()))
      else for (const c of calls) await c()
    },
    { tag, parallel },
  )
}

function checkAnalyticsNextEvents(events, tag) {
  const byType = countBy(events, (e) => e.type)
  for (const t of ['page', 'identify', 'track', 'group', 'alias']) checkEq(byType.get(t), 1, `${t} events stored`)
  const get = (t) => events.find((e) => e.type === t)
  for (const e of events) checkCommon(e, 'analytics.js', e.type)
  const page = get('page')
  checkEq([page.category, page.name, page.properties.tag], ['Docs', 'Intro', tag], 'page category, name, tag')
  const identify = get('identify')
  checkEq([identify.userId, identify.traits.email], [`anx-user-${tag}`, 'anx@example.com'], 'identify userId, traits.email')
  const track = get('track')
  checkEq([track.event, track.properties.total, track.properties.items], ['Order Completed', 42.5, [1, 2]], 'track')
  const group = get('group')
  checkEq([group.groupId, group.traits.name], [`anx-org-${tag}`, 'Acme'], 'group')
  const alias = get('alias')
  checkEq([alias.userId, alias.previousId], [`anx-user-${tag}`, `anx-visitor-${tag}`], 'alias')
  checkEq([track.userId, group.userId], [`anx-user-${tag}`, `anx-user-${tag}`], 'userId after identify')
  checkEq(new Set(events.map((e) => e.anonymousId)).size, 1, 'one anonymousId across the calls')
}

test('analytics-next (default mode): page, identify, track, group, alias stored; settings from sluice steer it', async (context) => {
  const source = await createSource('anx-default')
  const log = watch(context)
  const page = await openPage(context, analyticsNextPage('anx-default', source))
  const tag = `d-${RUN}`
  await analyticsNextCalls(page, tag, false)
  await waitStored(source, '5 events', (ev) => ev.length >= 5)
  await sleep(300)
  const final = await stored(source)
  checkEq(final.events.length, 5, 'events stored')
  checkAnalyticsNextEvents(final.events.map((e) => e.event), tag)
  const settings = log.filter((e) => e.kind === 'response' && e.url === `${SLUICE}/v1/projects/${source.write_key}/settings`)
  checkEq(settings.map((e) => e.status), [200], 'settings fetched from sluice')
  const paths = log.filter((e) => e.kind === 'request' && e.method === 'POST').map((e) => new URL(e.url).pathname)
  for (const p of ['/v1/p', '/v1/i', '/v1/t', '/v1/g', '/v1/a']) check(paths.includes(p), `no POST ${p}: ${short(paths)}`)
  checkSluiceAnswers(log)
  checkNoThirdParty(log)
  console.log(`  requests: ${[...new Set(log.filter((e) => e.kind === 'request').map((e) => `${e.method} ${new URL(e.url).pathname}`))].join(', ')}`)
})

test('analytics-next (batching mode): all five calls arrive through /v1/b', async (context) => {
  const source = await createSource('anx-batching')
  const log = watch(context)
  const options = {
    integrations: { 'Segment.io': { deliveryStrategy: { strategy: 'batching', config: { size: 5, timeout: 500 } } } },
  }
  const page = await openPage(context, analyticsNextPage('anx-batching', source, options))
  const tag = `b-${RUN}`
  await analyticsNextCalls(page, tag, true)
  await waitStored(source, '5 events', (ev) => ev.length >= 5)
  await sleep(300)
  const final = await stored(source)
  checkEq(final.events.length, 5, 'events stored')
  checkAnalyticsNextEvents(final.events.map((e) => e.event), tag)
  const posts = log.filter((e) => e.kind === 'request' && e.method === 'POST' && e.url.startsWith(SLUICE))
  const paths = posts.map((e) => new URL(e.url).pathname)
  check(paths.includes('/v1/b'), `no POST /v1/b: ${short(paths)}`)
  const other = paths.filter((p) => p !== '/v1/b' && p !== '/v1/m')
  check(other.length === 0, `events sent outside /v1/b: ${short(other)}`)
  const ok = log.filter((e) => e.kind === 'response' && e.url === `${SLUICE}/v1/b`).map((e) => e.status)
  check(ok.length > 0 && ok.every((s) => s === 200), `/v1/b statuses ${short(ok)}`)
  checkSluiceAnswers(log)
  checkNoThirdParty(log)
})

test('analytics-next: a 429 with Retry-After is retried and nothing is lost', async (context) => {
  const source = await createSource('anx-429', { rate_limit_per_second: 1 })
  const log = watch(context)
  const before = await metricCount('429')
  const page = await openPage(context, analyticsNextPage('anx-429', source))
  check(await page.evaluate(() => window.loaded), `analytics-next did not load: ${await page.evaluate(() => window.loadError)}`)
  const N = 6
  const tag = `r-${RUN}`
  // A burst: one request per event, at most one admitted per second.
  await page.evaluate(
    ({ N, tag }) => {
      for (let i = 0; i < N; i++) window.analytics.track('Burst', { i, tag })
    },
    { N, tag },
  )
  const { events } = await waitStored(source, `${N} burst events`, (ev) => ev.filter((e) => e.event === 'Burst').length >= N, 60000)
  await sleep(1500) // a late duplicate would show here
  const final = (await stored(source)).events.map((e) => e.event).filter((e) => e.event === 'Burst')
  const byI = countBy(final, (e) => e.properties.i)
  for (let i = 0; i < N; i++) checkEq(byI.get(i), 1, `Burst i=${i} stored`)
  checkEq(final.length, N, 'burst events stored')
  for (const e of final) checkCommon(e, 'analytics.js', 'Burst')
  const limited = log.filter((e) => e.kind === 'response' && e.status === 429 && e.url.startsWith(`${SLUICE}/v1/`))
  check(limited.length > 0, 'no 429 seen by the page')
  check(limited.every((e) => e.headers['retry-after']), `429 without Retry-After: ${short(limited[0].headers)}`)
  const after = await metricCount('429')
  check(after - before >= limited.length, `/metrics counted ${after - before} 429s, the page saw ${limited.length}`)
  check(events.length >= N, 'lost events')
  checkNoThirdParty(log)
})

test('sluice.js via the snippet: page, track, identify with every field; calls before load replayed in order; identity persists across a reload', async (context) => {
  const source = await createSource('snippet')
  const log = watch(context)
  // Hold /sluice.js back a little so the calls below certainly happen before it runs.
  await context.route(`${SLUICE}/sluice.js`, async (route) => {
    await sleep(500)
    await route.continue()
  })
  const tag = `s-${RUN}`
  const url = await snippetPage(
    'snippet',
    source,
    `window.stubBeforeLoad = Array.isArray(window.analytics) && !window.analytics.sluice
if (!sessionStorage.getItem('visited')) { // the first visit only
  sessionStorage.setItem('visited', '1')
  analytics.track('Before Load', { n: 1, tag: '${tag}' })
  analytics.identify('snippet-user-${tag}', { email: 'snip@example.com', plan: 'pro' })
  analytics.track('Queued After Identify', { n: 2 })
}
analytics.ready(function () { window.readyFired = true })`,
  )
  const page = await openPage(context, url)
  check(await page.evaluate(() => window.stubBeforeLoad), 'the calls were not made against the loader stub')
  await waitUntil('sluice.js to load', () => page.evaluate(() => !!(window.analytics && window.analytics.sluice && window.readyFired)))
  await page.evaluate(() => window.analytics.track('After Load', { n: 3 }, { context: { campaign: { name: 'x' } } }))
  const first = await waitStored(source, '5 events', (ev) => ev.length >= 5)
  const ev = first.events.map((e) => e.event)
  checkEq(
    ev.map((e) => e.type + (e.event ? `:${e.event}` : '')),
    ['page', 'track:Before Load', 'identify', 'track:Queued After Identify', 'track:After Load'],
    'stored in call order',
  )
  checkEq(first.rejected.length, 0, 'rejected events')
  const anon = ev[0].anonymousId
  check(uuidV4.test(anon), `anonymousId is not a uuid v4: ${anon}`)
  const path = new URL(url).pathname
  for (const e of ev) {
    checkCommon(e, 'sluice.js', e.type)
    checkEq(e.anonymousId, anon, `${e.type} anonymousId`)
    checkEq(e.context.page, { path, referrer: '', search: '', title: 'sluice.js snippet', url }, `${e.type} context.page`)
    check(uuidV4.test(e.messageId), `messageId is not a uuid: ${e.messageId}`)
  }
  checkEq(ev[0].properties, { path, referrer: '', search: '', title: 'sluice.js snippet', url }, 'page properties')
  check(!('userId' in ev[0]) && !('userId' in ev[1]), 'userId before identify')
  checkEq([ev[2].userId, ev[2].traits], [`snippet-user-${tag}`, { email: 'snip@example.com', plan: 'pro' }], 'identify')
  checkEq([ev[3].userId, ev[4].userId], [`snippet-user-${tag}`, `snippet-user-${tag}`], 'userId after identify')
  checkEq(ev[1].properties, { n: 1, tag }, 'track properties')
  checkEq(ev[4].context.campaign, { name: 'x' }, 'options.context merged')
  const ts = ev.map((e) => Date.parse(e.originalTimestamp || e.timestamp))
  check(ts.every((t, i) => i === 0 || t >= ts[i - 1]), `timestamps out of order: ${short(ev.map((e) => e.timestamp))}`)

  // The wire: CORS-simple text/plain batches, the write key in the body, no Authorization.
  const sent = log.filter((e) => e.kind === 'request' && isBatch(e))
  check(sent.length > 0, 'no POST /v1/batch')
  for (const r of sent) {
    checkEq(r.headers['content-type'], 'text/plain', 'Content-Type of /v1/batch')
    check(!r.headers.authorization, 'Authorization header sent')
    const body = JSON.parse(r.body)
    checkEq(body.writeKey, source.write_key, 'writeKey in the body')
    check(Array.isArray(body.batch) && typeof body.sentAt === 'string', `batch body ${short(body)}`)
  }

  // First-party storage.
  const cookies = await context.cookies(PAGES)
  const anonCookie = cookies.find((c) => c.name === 'ajs_anonymous_id')
  check(anonCookie, `no ajs_anonymous_id cookie: ${short(cookies)}`)
  checkEq([decodeURIComponent(anonCookie.value), anonCookie.path, anonCookie.sameSite], [anon, '/', 'Lax'], 'ajs_anonymous_id cookie')
  const days = (anonCookie.expires * 1000 - Date.now()) / 864e5
  check(days > 360 && days < 370, `ajs_anonymous_id cookie expires in ${days.toFixed(1)} days`)
  const uidCookie = cookies.find((c) => c.name === 'ajs_user_id')
  checkEq(uidCookie && decodeURIComponent(uidCookie.value), `snippet-user-${tag}`, 'ajs_user_id cookie')
  const ls = await page.evaluate(() => ({
    anon: JSON.parse(localStorage.getItem('ajs_anonymous_id')),
    uid: JSON.parse(localStorage.getItem('ajs_user_id')),
    traits: JSON.parse(localStorage.getItem('ajs_user_traits')),
    api: [analytics.user().anonymousId(), analytics.user().id(), analytics.user().traits()],
  }))
  checkEq(ls, {
    anon,
    uid: `snippet-user-${tag}`,
    traits: { email: 'snip@example.com', plan: 'pro' },
    api: [anon, `snippet-user-${tag}`, { email: 'snip@example.com', plan: 'pro' }],
  }, 'localStorage and analytics.user()')

  // A reload (the page makes no identify call this time): same anonymousId, userId still known.
  await page.reload()
  const second = await waitStored(source, 'the page event after the reload', (ev) => ev.length >= 6)
  const again = second.events.map((e) => e.event)[5]
  checkEq([again.type, again.anonymousId, again.userId], ['page', anon, `snippet-user-${tag}`], 'after the reload')
  await sleep(500)
  const all = (await stored(source)).events.map((e) => e.event)
  checkEq(all.length, 6, `events stored (no duplicates): ${short(all.map((e) => [e.type, e.event, e.messageId, e.timestamp]), 2000)}`)
  checkEq(await localQueue(page, source.write_key), [], 'the stored queue once delivered')
  check(page.errors.length === 0, `page errors: ${short(page.errors)}`)
  checkSluiceAnswers(log)
  checkNoThirdParty(log)
})

test('sluice.js by a plain script tag with load(writeKey, {host}): page arguments, group, alias, reset', async (context) => {
  const source = await createSource('api')
  const log = watch(context)
  // Not the snippet: the script is included directly and told where sluice is.
  const url = writePage(
    'api',
    'sluice.js api',
    `<script src="${SLUICE}/sluice.js"></script>
<script>analytics.load(${JSON.stringify(source.write_key)}, { host: ${JSON.stringify(SLUICE)} })</script>`,
  )
  const page = await openPage(context, url + '?utm_source=news&utm_campaign=spring')
  const before = await page.evaluate(() => {
    const a = window.analytics
    a.page('Docs', 'Intro', { section: 'start' })
    a.page('Pricing')
    a.alias('api-user', 'api-visitor')
    a.identify('api-user', { plan: 'pro' })
    a.identify({ seats: 3 }) // traits only: merged into the stored ones
    a.group('org-1', { name: 'Acme' })
    const ids = [a.user().anonymousId(), a.user().id(), a.user().traits()]
    a.reset()
    a.track('After Reset')
    a.flush()
    return { ids, after: [a.user().anonymousId(), a.user().id(), a.user().traits()], cookie: document.cookie }
  })
  const [anon, uid, traits] = before.ids
  checkEq([uid, traits], ['api-user', { plan: 'pro', seats: 3 }], 'user() before reset')
  check(uuidV4.test(anon), `anonymousId ${anon}`)
  check(before.after[0] !== anon && uuidV4.test(before.after[0]), `a new anonymousId after reset: ${before.after[0]}`)
  checkEq([before.after[1], before.after[2]], [null, {}], 'userId and traits after reset')
  check(!/ajs_user_id=/.test(before.cookie), `ajs_user_id cookie after reset: ${before.cookie}`)
  const { events } = await waitStored(source, '7 events', (ev) => ev.length >= 7)
  const ev = events.map((e) => e.event)
  checkEq(ev.map((e) => e.type), ['page', 'page', 'alias', 'identify', 'identify', 'group', 'track'], 'types in call order')
  for (const e of ev) checkCommon(e, 'sluice.js', e.type)
  checkEq([ev[0].category, ev[0].name, ev[0].properties.category, ev[0].properties.name, ev[0].properties.section], ['Docs', 'Intro', 'Docs', 'Intro', 'start'], 'page(category, name, properties)')
  checkEq([ev[1].category, ev[1].name], [undefined, 'Pricing'], 'page(name)')
  checkEq(ev[0].properties.search, '?utm_source=news&utm_campaign=spring', 'page properties.search')
  checkEq(ev[0].context.campaign, { source: 'news', name: 'spring' }, 'context.campaign from utm_ parameters')
  checkEq([ev[2].userId, ev[2].previousId, ev[2].anonymousId], ['api-user', 'api-visitor', anon], 'alias')
  checkEq([ev[3].userId, ev[3].traits], ['api-user', { plan: 'pro' }], 'identify')
  checkEq([ev[4].userId, ev[4].traits], ['api-user', { plan: 'pro', seats: 3 }], 'identify with traits only')
  checkEq([ev[5].groupId, ev[5].traits, ev[5].userId], ['org-1', { name: 'Acme' }, 'api-user'], 'group')
  checkEq([ev[6].event, ev[6].userId, ev[6].anonymousId], ['After Reset', undefined, before.after[0]], 'track after reset')
  const sent = log.filter((e) => e.kind === 'request' && isBatch(e))
  check(sent.length > 0, 'nothing sent to the host given to load()')
  checkNoThirdParty(log)
})

test('sluice.js: a 4xx other than 408/429 drops the batch without retrying', async (context) => {
  const source = await createSource('drop-400')
  const log = watch(context)
  let answered = 0
  await context.route(`${SLUICE}/v1/batch`, async (route) => {
    answered++
    await route.fulfill({
      status: 400,
      headers: { 'Access-Control-Allow-Origin': PAGES_ORIGIN, 'Content-Type': 'application/json' },
      body: '{"code":"invalid","message":"test"}',
    })
  })
  const page = await openPage(context, await snippetPage('drop-400', source))
  await waitUntil('sluice.js to load', () => page.evaluate(() => !!(window.analytics && window.analytics.sluice)))
  await page.evaluate(() => analytics.track('Refused').flush())
  await waitUntil('a 400', () => answered >= 1)
  await waitUntil('the stored queue to empty', async () => (await localQueue(page, source.write_key)).length === 0, 5000)
  await sleep(2500) // a retry would come within this
  checkEq(answered, 1, 'requests answered 400 (no retry)')
  checkNoThirdParty(log)
})

test('sluice.js: offline then online recovery, and a reload while offline keeps the queue', async (context) => {
  const source = await createSource('offline')
  const log = watch(context)
  const url = await snippetPage('offline', source)
  const page = await openPage(context, url)
  await waitStored(source, 'the page event', (ev) => ev.length >= 1)

  await context.setOffline(true)
  check((await page.evaluate(() => navigator.onLine)) === false, 'navigator.onLine after setOffline(true)')
  await page.evaluate(() => analytics.track('Offline 1'))
  await page.evaluate(() => analytics.flush())
  await waitUntil('a failed attempt while offline', () =>
    log.some((e) => e.kind === 'failed' && isBatch(e)),
  )
  checkEq((await localQueue(page, source.write_key)).map((i) => i.e.event), ['Offline 1'], 'stored queue while offline')
  await context.setOffline(false) // `online` fires: sent at once
  await waitStored(source, 'Offline 1 after going online', (ev) => ev.some((e) => e.event === 'Offline 1'), 10000)

  await context.setOffline(true)
  await page.evaluate(() => {
    analytics.track('Offline 2')
    analytics.track('Offline 3')
  })
  await waitUntil('Offline 2 and 3 in the stored queue', async () => (await localQueue(page, source.write_key)).length === 2)
  const reload = await page.reload().then(() => 'loaded', (e) => String(e.message).split('\n')[0])
  check(reload !== 'loaded', 'the reload worked while offline')
  await context.setOffline(false)
  await page.goto(url) // the next load sends what the last one left
  await waitStored(source, 'Offline 2 and 3 after the next load', (ev) => ev.filter((e) => /^Offline [23]$/.test(e.event)).length >= 2)
  await waitUntil('the stored queue to empty', async () => (await localQueue(page, source.write_key)).length === 0)
  await sleep(1000)
  const ev = (await stored(source)).events.map((e) => e.event)
  const byName = countBy(ev.filter((e) => e.type === 'track'), (e) => e.event)
  checkEq(Object.fromEntries(byName), { 'Offline 1': 1, 'Offline 2': 1, 'Offline 3': 1 }, 'each offline event once')
  checkEq(ev.filter((e) => e.type === 'page').length, 2, 'page events (first load, load after coming back)')
  checkNoThirdParty(log)
})

test('sluice.js: a reload with queued events (collector answering 503) delivers them once', async (context) => {
  const source = await createSource('reload-queue')
  const log = watch(context)
  const url = await snippetPage('reload-queue', source)
  const page = await openPage(context, url)
  await waitStored(source, 'the page event', (ev) => ev.length >= 1)
  let refused = 0
  const refuse = async (route) => {
    refused++
    await route.fulfill({
      status: 503,
      headers: { 'Access-Control-Allow-Origin': PAGES_ORIGIN, 'Content-Type': 'application/json' },
      body: '{"code":"unavailable","message":"test outage"}',
    })
  }
  await context.route(`${SLUICE}/v1/batch`, refuse)
  await page.evaluate(() => {
    analytics.track('Queued 1')
    analytics.track('Queued 2')
    analytics.flush()
  })
  await waitUntil('a 503', () => refused >= 1)
  checkEq((await localQueue(page, source.write_key)).map((i) => i.e.event), ['Queued 1', 'Queued 2'], 'stored queue')
  const before = refused
  await page.reload()
  await waitUntil('a 503 after the reload', () => refused > before)
  await context.unroute(`${SLUICE}/v1/batch`, refuse)
  await waitStored(source, 'Queued 1 and 2', (ev) => ev.filter((e) => /^Queued/.test(e.event || '')).length >= 2)
  await waitStored(source, 'the page event after the reload', (ev) => ev.filter((e) => e.type === 'page').length >= 2)
  await sleep(1000)
  const ev = (await stored(source)).events.map((e) => e.event)
  checkEq(ev.map((e) => e.type + (e.event ? `:${e.event}` : '')).sort(), ['page', 'page', 'track:Queued 1', 'track:Queued 2'], 'stored once each')
  checkEq(await localQueue(page, source.write_key), [], 'the stored queue once delivered')
  checkNoThirdParty(log)
})

test('sluice.js: a 429 with Retry-After is honoured and nothing is lost (rate limit 1/s, burst)', async (context) => {
  const source = await createSource('snippet-429', { rate_limit_per_second: 1 })
  const log = watch(context)
  const before = await metricCount('429')
  const page = await openPage(context, await snippetPage('snippet-429', source))
  await waitUntil('sluice.js to load', () => page.evaluate(() => !!(window.analytics && window.analytics.sluice)))
  const N = 30
  await page.evaluate(async (N) => {
    for (let i = 0; i < N; i++) {
      analytics.track('Burst', { i })
      if (i % 10 === 9) await new Promise((r) => setTimeout(r, 150))
    }
  }, N)
  await waitStored(source, `${N} burst events`, (ev) => ev.filter((e) => e.event === 'Burst').length >= N, 60000)
  await sleep(1500)
  const ev = (await stored(source)).events.map((e) => e.event)
  const byI = countBy(ev.filter((e) => e.event === 'Burst'), (e) => e.properties.i)
  for (let i = 0; i < N; i++) checkEq(byI.get(i), 1, `Burst i=${i} stored`)
  checkEq(ev.length, N + 1, 'events stored (the page event and the burst)')
  const batch = log.filter(isBatch)
  const limited = batch.filter((e) => e.kind === 'response' && e.status === 429)
  check(limited.length > 0, `no 429 seen; statuses ${short(batch.filter((e) => e.kind === 'response').map((e) => e.status))}`)
  for (const r of limited) {
    const wait = Number(r.headers['retry-after'])
    check(wait > 0, `429 without Retry-After: ${short(r.headers)}`)
    const next = batch.find((e) => e.kind === 'request' && e.t > r.t)
    check(next, 'nothing sent after a 429')
    check(next.t - r.t >= wait * 1000 - 150, `resent ${next.t - r.t} ms after a 429 with Retry-After: ${wait}`)
  }
  const after = await metricCount('429')
  check(after - before >= limited.length, `/metrics counted ${after - before} 429s, the page saw ${limited.length}`)
  checkEq(await localQueue(page, source.write_key), [], 'the stored queue once delivered')
  checkNoThirdParty(log)
})

test('sluice.js: events still waiting when the page is left go out with keepalive, in chunks of at most 60 KB', async (context) => {
  const source = await createSource('pagehide')
  const log = watch(context)
  // Neither Playwright nor the page's CDP session sees requests made while a page is being left,
  // so the page records its own fetch calls in localStorage (which outlives it).
  const url = await snippetPage(
    'pagehide',
    source,
    `(function () {
  var fetch = window.fetch
  window.fetch = function (url, init) {
    if (String(url).indexOf('/v1/batch') >= 0) {
      var calls = JSON.parse(localStorage.getItem('test_fetch_calls') || '[]')
      calls.push({ keepalive: !!(init && init.keepalive), bytes: new Blob([(init && init.body) || '']).size })
      localStorage.setItem('test_fetch_calls', JSON.stringify(calls))
    }
    return fetch.apply(this, arguments)
  }
})()`,
  )
  const page = await openPage(context, url)
  await waitStored(source, 'the page event', (ev) => ev.length >= 1)
  await waitUntil('the page event acknowledged', async () => (await localQueue(page, source.write_key)).length === 0)
  // 8 events of about 9 KB: fewer than 10, so they wait for the 1 s timer; together over 60 KB.
  await page.evaluate(() => {
    localStorage.removeItem('test_fetch_calls')
    const pad = 'x'.repeat(9000)
    for (let i = 0; i < 8; i++) analytics.track('Leaving', { i, pad })
  })
  // Leave for a page of the same origin without sluice.js: pagehide; no timer of the page left runs again.
  await page.goto(writePage('elsewhere', 'no analytics here', ''))
  await waitStored(source, 'events sent on pagehide', (ev) => ev.some((e) => e.event === 'Leaving'))
  await sleep(500)
  const onHide = (await stored(source)).events.filter((e) => e.event.event === 'Leaving').length
  const calls = await page.evaluate(() => JSON.parse(localStorage.getItem('test_fetch_calls') || '[]'))
  const left = (await localQueue(page, source.write_key)).length
  console.log(`  pagehide: bodies ${calls.map((c) => c.bytes).join(', ')} bytes; ${onHide} of 8 events stored, ${left} left queued`)
  check(calls.length >= 2 && calls.every((c) => c.keepalive), `want the 72 KB in 2 or more keepalive requests: ${short(calls)}`)
  check(calls.every((c) => c.bytes <= 60000), `keepalive bodies over 60 KB: ${short(calls)}`)
  // The page left never saw the answers, so all 8 stay queued; the next visit sends them again and
  // sluice keeps each messageId once.
  checkEq(left, 8, 'Leaving events still queued for the next visit')
  // The next visit sends what the browser's keepalive quota (64 KiB in flight) did not let out.
  await page.goto(url)
  await waitStored(source, 'all 8 Leaving events', (ev) => ev.filter((e) => e.event === 'Leaving').length >= 8)
  await sleep(1000)
  const byI = countBy((await stored(source)).events.map((e) => e.event).filter((e) => e.event === 'Leaving'), (e) => e.properties.i)
  for (let i = 0; i < 8; i++) checkEq(byI.get(i), 1, `Leaving i=${i} stored`)
  checkNoThirdParty(log)
})

test('sluice.js: an Origin the source does not allow is refused (403) and nothing is stored', async (context) => {
  const source = await createSource('wrong-origin', { allowed_origins: ['http://example.invalid'] })
  const log = watch(context)
  const before403 = await metricCount('403')
  const page = await openPage(context, await snippetPage('wrong-origin', source))
  await waitUntil('sluice.js to load', () => page.evaluate(() => !!(window.analytics && window.analytics.sluice)))
  await page.evaluate(() => {
    analytics.track('Should Not Be Stored')
    analytics.flush()
  })
  // The 403 carries no CORS grant, so the page sees a failed request; /metrics counts the 403.
  const refused = await waitUntil('a refused POST /v1/batch', async () => {
    const answer = log.find((e) => isBatch(e) && (e.kind === 'response' || e.kind === 'failed'))
    return answer && (await metricCount('403')) - before403 >= 1 && answer
  })
  check(refused.kind === 'failed' || refused.status === 403, `POST /v1/batch answered ${refused.status}`)
  await sleep(1500)
  const { events } = await stored(source)
  checkEq(events.length, 0, 'events stored for the refused origin')
  const queued = (await localQueue(page, source.write_key)).map((i) => i.e.type + (i.e.event ? `:${i.e.event}` : ''))
  if (refused.kind === 'failed') {
    // It cannot tell a 403 without a CORS grant from a network error: kept, retried with backoff.
    checkEq(queued, ['page', 'track:Should Not Be Stored'], 'kept in the page')
  } else {
    checkEq(queued, [], 'dropped after a readable 403')
  }
  checkNoThirdParty(log)
})

test('sluice.js: served gzipped within 6 KB, as the repository has it', async () => {
  const raw = await new Promise((resolve, reject) => {
    http
      .get(`${SLUICE}/sluice.js`, { headers: { 'Accept-Encoding': 'identity' } }, (res) => {
        const chunks = []
        res.on('data', (c) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }))
      })
      .on('error', reject)
  })
  checkEq(raw.status, 200, 'GET /sluice.js status')
  check(/^application\/javascript/.test(raw.headers['content-type'] || ''), `Content-Type ${raw.headers['content-type']}`)
  check(raw.body.equals(readFileSync(args.asset)), 'the served /sluice.js differs from the repository asset (rebuild sluice)')
  const gz = gzipSync(raw.body, { level: 9 }).length
  console.log(`  /sluice.js: ${raw.body.length} bytes, ${gz} gzipped (budget ${GZIP_BUDGET})`)
  check(gz <= GZIP_BUDGET, `${gz} bytes gzipped, over ${GZIP_BUDGET}`)
})

dashboardTests({
  test, check, checkEq, short, sleep, waitUntil, admin, writePage, openPage, watch, checkNoThirdParty,
  SLUICE, PAGES, PAGES_ORIGIN, CIO, RUN, TOKEN: args.token, EVENTS_TIMEOUT,
})

test('no request left for a host other than sluice and the page server', async () => {
  const others = thirdParty(allRequests)
  check(allRequests.length > 0, 'no requests recorded')
  check(others.length === 0, `requests to other hosts: ${short([...new Set(others)])}`)
})

// ------------------------------------------------------------------ runner

// A failed test's evidence: a full-page screenshot of each page still open in its context.
async function screenshots(context, name) {
  const slug = name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60).replace(/-$/, '')
  let n = 0
  for (const page of context.pages()) {
    const file = join(args.artifacts, `${slug}-${++n}.png`)
    try {
      mkdirSync(args.artifacts, { recursive: true })
      await page.screenshot({ path: file, fullPage: true, timeout: 10000 })
      console.log(`  screenshot: ${file} (${page.url()})`)
    } catch (e) {
      console.log(`  screenshot ${file} failed: ${String(e.message || e).split('\n')[0]}`)
    }
  }
}

async function main() {
  const selected = tests.filter((t) => !args.only || t.name.includes(args.only))
  let passed = 0
  let failed = 0
  let browser
  try {
    // launch() (not a persistent context) gives Chromium a fresh temporary --user-data-dir.
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS })
    console.log(`chromium ${browser.version()}`)
  } catch (e) {
    console.log(`FAIL launching chromium: ${e.message}`)
    writeFileSync(args.summary, JSON.stringify({ passed: 0, failed: 1 }))
    return 1
  }
  for (const t of selected) {
    const started = Date.now()
    const context = await browser.newContext(t.contextOptions) // fresh cookies and storage per test
    let timer
    try {
      await Promise.race([
        t.fn(context),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Failure(`test timed out after ${TEST_TIMEOUT / 1000} s`)), TEST_TIMEOUT)
        }),
      ])
      passed++
      console.log(`PASS ${t.name} (${((Date.now() - started) / 1000).toFixed(1)} s)`)
    } catch (e) {
      failed++
      console.log(`FAIL ${t.name}: ${e instanceof Failure ? e.message : e.stack || e}`)
      await screenshots(context, t.name)
    } finally {
      clearTimeout(timer)
      await context.close().catch(() => {})
    }
  }
  await browser.close().catch(() => {})
  writeFileSync(args.summary, JSON.stringify({ passed, failed }))
  return failed ? 1 : 0
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.log(`FAIL run.mjs: ${e.stack || e}`)
    process.exit(1)
  },
)
