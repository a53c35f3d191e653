// The dashboard's browser tests, driven through the UI as a person would (click, type, keys):
// sign-in, a web source (its snippet copied, the live debugger), a Customer.io destination
// against the in-repo test server (sluice-cio-test-server), deliveries, rejected then fixed
// credentials, deletion; keyboard use; a narrow screen; and that no page ever shows a secret.
// Assertions read the page; the admin API and the test server's /_test/* API are used to check
// what happened behind it, and for the narrow-screen test's setup.
//
// run.mjs registers these with dashboardTests(h), passing its helpers and settings.

export function dashboardTests(h) {
  const { test, check, checkEq, short, sleep, waitUntil, admin, writePage, openPage, watch, checkNoThirdParty } = h
  const { SLUICE, PAGES_ORIGIN, CIO, RUN, TOKEN, EVENTS_TIMEOUT } = h

  const SITE_ID = 'SITE_ID_TEST' // what the test server accepts until it is told otherwise
  const API_KEY = 'API_KEY_TEST'
  const NEW_KEY = `API_KEY_ROTATED_${RUN.replace(/\W/g, '_')}` // what it accepts after the rotation
  const SECRETS = { 'the API key': API_KEY, 'the rotated API key': NEW_KEY, 'the admin token': TOKEN }
  const MASK = '••••' // how the dashboard shows a secret: the mask and its last four characters
  const UI_TIMEOUT = 15000

  // Every HTML document and htmx fragment any dashboard test got from sluice. The bodies are read
  // as they arrive; a test ends its recording with `await recording.stop()` (in a `finally`: its
  // context is closed after it, and a body can no longer be read then).
  const seenHtml = []
  function recordHtml(context) {
    const mine = []
    let stopped = false
    context.on('response', (r) => {
      const url = r.url()
      if (stopped) return
      if (!url.startsWith(`${SLUICE}/ui`) && url !== `${SLUICE}/`) return
      if (!(r.headers()['content-type'] || '').startsWith('text/html')) return
      if (r.status() >= 300 && r.status() < 400) return // redirects have no body
      const read = r.text().then(
        (body) => ({ url, status: r.status(), body }),
        (e) => ({ url, status: r.status(), error: String(e.message || e).split('\n')[0] }),
      )
      mine.push(read)
      seenHtml.push(read)
    })
    return {
      stop: () => {
        stopped = true
        return Promise.all(mine)
      },
    }
  }

  // The Customer.io test server's control API.
  async function cio(method, path, body) {
    const r = await fetch(CIO + path, {
      method,
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const text = await r.text()
    check(r.ok, `${method} ${CIO}${path}: ${r.status} ${short(text)}`)
    return text ? JSON.parse(text) : null
  }
  const acceptedFor = async (userId) =>
    (await cio('GET', '/_test/accepted')).filter((op) => op.identifiers && op.identifiers.id === userId)

  // ---------------------------------------------------------------- UI helpers

  const path = (page) => new URL(page.url()).pathname
  const squash = (s) => (s || '').replace(/\s+/g, ' ').trim()
  const textOf = async (page, selector) => squash(await page.locator(selector).first().textContent({ timeout: UI_TIMEOUT }))

  async function dashboardPage(context, url) {
    const page = await openPage(context)
    page.setDefaultTimeout(UI_TIMEOUT)
    if (url) await page.goto(url)
    return page
  }

  // Clicks, then waits for the main frame's next document (a link, or a form's POST and the
  // page or redirect it answers with) to load.
  async function clickToLoad(page, locator) {
    const loaded = page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame(), timeout: UI_TIMEOUT })
    await locator.click()
    await loaded
    await page.waitForLoadState('load')
  }

  // Clicks into a field, clears it and types, as a person would.
  async function typeInto(page, selector, text) {
    const field = page.locator(selector)
    await field.click()
    await page.keyboard.press('ControlOrMeta+A')
    await page.keyboard.press('Delete')
    await page.keyboard.type(text)
    checkEq(await field.inputValue(), text, `what ${selector} holds after typing`)
  }

  const navLink = (page, name) => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true })
  const button = (page, name) => page.getByRole('button', { name, exact: true })

  // Opens `url` again and again (a person pressing reload) until `done()` holds.
  async function reloadUntil(page, url, what, done, timeout = EVENTS_TIMEOUT) {
    const deadline = Date.now() + timeout
    for (;;) {
      const v = await done()
      if (v) return v
      if (Date.now() > deadline) check(false, `timed out after ${timeout / 1000} s reloading ${url} for ${what}`)
      await sleep(250)
      await page.goto(url)
    }
  }

  async function signIn(page) {
    await page.goto(`${SLUICE}/ui/login`)
    await typeInto(page, '#token', TOKEN)
    await clickToLoad(page, button(page, 'Sign in'))
    checkEq(path(page), '/ui/destinations', 'the page after signing in')
  }

  // Page errors and Content-Security-Policy violations (console errors of other kinds, such as
  // the 4xx of a refused form, are expected).
  function checkPageErrors(page, what) {
    const bad = page.errors.filter((e) => !/^console\.(error|warning): Failed to load resource: the server responded with a status of 4\d\d/.test(e))
    check(bad.length === 0, `${what}: ${short(bad, 800)}`)
  }

  // The delivery log on a destination page: each row's outcome, HTTP status and request body.
  function deliveryRows(page) {
    return page.locator('table.log tbody tr').evaluateAll((rows) =>
      rows.map((r) => ({
        outcome: (r.querySelector('.outcome') || {}).textContent,
        outcomeClass: (r.querySelector('.outcome') || { className: '' }).className,
        http: r.children[2] && r.children[2].textContent.trim(),
        request: (r.querySelectorAll('pre')[0] || {}).textContent,
      })),
    )
  }
  const opsOf = (row) => {
    try {
      return JSON.parse(row.request).batch || []
    } catch {
      return []
    }
  }

  // ---------------------------------------------------------------- the whole flow

  test('dashboard: sign in, web source (snippet copied, live debugger), Customer.io destination (wrong key refused), deliveries, credentials rejected then fixed, delete', async (context) => {
    const recording = recordHtml(context)
    const log = watch(context)
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: SLUICE })
    try {
      // 1. Sign in: a wrong token first.
      const dash = await dashboardPage(context, `${SLUICE}/`)
      checkEq(path(dash), '/ui/login', 'where / leads without a session')
      await typeInto(dash, '#token', 'not-the-admin-token')
      await clickToLoad(dash, button(dash, 'Sign in'))
      checkEq(path(dash), '/ui/login', 'the page after a wrong token')
      check(await dash.locator('#token-error').isVisible(), 'no #token-error after a wrong token')
      check((await textOf(dash, '#token-error')).includes('not the admin token'), `#token-error: ${await textOf(dash, '#token-error')}`)
      checkEq((await context.cookies(SLUICE)).map((c) => c.name), [], 'cookies after a wrong token')
      await typeInto(dash, '#token', TOKEN)
      await clickToLoad(dash, button(dash, 'Sign in'))
      checkEq(path(dash), '/ui/destinations', 'the page after signing in')
      const cookie = (await context.cookies(SLUICE)).find((c) => c.name === 'sluice_session')
      check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', `session cookie: ${short(cookie)}`)
      check(await button(dash, 'Sign out').isVisible(), 'no "Sign out" once signed in')

      // 2. A web source: its write key, and its snippet copied to the clipboard.
      await clickToLoad(dash, navLink(dash, 'Sources'))
      checkEq(path(dash), '/ui/sources', 'the Sources link')
      const sourceName = `dash-web-${RUN}`
      await typeInto(dash, '#name', sourceName)
      await dash.locator('#kind').selectOption('web')
      await typeInto(dash, '#allowed_origins', PAGES_ORIGIN)
      await clickToLoad(dash, button(dash, 'Create source'))
      const sourceId = (path(dash).match(/^\/ui\/sources\/([^/]+)$/) || [])[1]
      check(sourceId, `"Create source" led to ${dash.url()}`)
      checkEq(await textOf(dash, 'h1'), `${sourceName} web`, 'the source page heading')
      const writeKey = await textOf(dash, '#write-key')
      check(/^\w{16,}$/.test(writeKey), `#write-key: ${writeKey}`)
      const stored = await admin('GET', `/api/v1/sources/${sourceId}`)
      checkEq([stored.write_key, stored.kind, stored.allowed_origins], [writeKey, 'web', [PAGES_ORIGIN]], 'the source as stored')
      const snippet = await dash.locator('textarea#snippet').inputValue()
      check(snippet.includes('<script') && snippet.includes(writeKey) && snippet.includes(`${SLUICE}/sluice.js`), `snippet: ${short(snippet)}`)
      await button(dash, 'Copy snippet').click()
      await waitUntil('"Copied." beside the button', async () => (await textOf(dash, '[data-copy=snippet] + .copied')) === 'Copied.', 5000)
      checkEq(await dash.evaluate(() => navigator.clipboard.readText()), snippet, 'the clipboard after "Copy snippet"')

      // 3. Add destination → Customer.io: a wrong API key is refused beside its field.
      await clickToLoad(dash, navLink(dash, 'Destinations'))
      await clickToLoad(dash, dash.getByRole('link', { name: 'Add destination → Customer.io' }))
      checkEq(path(dash), '/ui/destinations/new', '"Add destination → Customer.io"')
      const destName = `dash-cio-${RUN}`
      await typeInto(dash, '#name', destName)
      await typeInto(dash, '#site_id', SITE_ID)
      await typeInto(dash, '#api_key', 'API_KEY_WRONG')
      checkEq(await dash.locator('#region').inputValue(), 'us', 'the default region')
      check(!(await dash.locator('#track_url').isVisible()), 'Track URL shown before "Advanced" is opened')
      await dash.locator('summary', { hasText: 'Advanced' }).click()
      await dash.locator('#track_url').waitFor({ state: 'visible' })
      await typeInto(dash, '#track_url', CIO)
      await clickToLoad(dash, button(dash, 'Create destination'))
      check(await dash.locator('#api_key-error').isVisible(), `no #api_key-error after a wrong key; errors: ${short(await dash.locator('.error').allTextContents())}`)
      check(/rejected/i.test(await textOf(dash, '#api_key-error')), `#api_key-error: ${await textOf(dash, '#api_key-error')}`)
      const beside = await dash.evaluate(() => {
        const input = document.getElementById('api_key')
        return {
          next: input.nextElementSibling && input.nextElementSibling.id,
          describedby: input.getAttribute('aria-describedby'),
          invalid: input.getAttribute('aria-invalid'),
        }
      })
      checkEq(beside, { next: 'api_key-error', describedby: 'api_key-error', invalid: 'true' }, 'the API key error beside its field')
      checkEq(await dash.locator('.error').count(), 1, 'errors on the form')
      const kept = await Promise.all(['#name', '#site_id', '#api_key', '#track_url'].map((s) => dash.locator(s).inputValue()))
      checkEq(kept, [destName, SITE_ID, '', CIO], 'the form after the refusal (name, Site ID, API key, Track URL)')
      check(await dash.locator('#track_url').isVisible(), '"Advanced" closed again after the refusal')
      checkEq((await admin('GET', '/api/v1/destinations')).destinations.filter((d) => d.name === destName).length, 0, 'destinations created by the refused form')
      // The right key: created, and the browser is taken to its page.
      await typeInto(dash, '#api_key', API_KEY)
      await clickToLoad(dash, button(dash, 'Create destination'))
      const destId = (path(dash).match(/^\/ui\/destinations\/([^/]+)$/) || [])[1]
      check(destId && destId !== 'new', `"Create destination" led to ${dash.url()}; ${short(await dash.locator('.error').allTextContents())}`)
      const destUrl = `${SLUICE}/ui/destinations/${destId}`
      checkEq(await textOf(dash, 'h1'), `${destName} customerio`, 'the destination page heading')
      const facts = await dash.locator('dl.facts').innerText()
      check(facts.includes(SITE_ID) && facts.includes(`${MASK}${API_KEY.slice(-4)}`) && facts.includes(CIO), `the destination's facts: ${short(facts)}`)
      await reloadUntil(dash, destUrl, 'the status "active"', async () => (await textOf(dash, '#state')) === 'active', UI_TIMEOUT)

      // 4 and 5. The source page's live debugger is open (its stream answered) before a page of
      // the site sends identify, track and page with analytics-next.
      await clickToLoad(dash, navLink(dash, 'Sources'))
      const streamAnswered = dash.waitForResponse((r) => r.url().startsWith(`${SLUICE}/api/v1/sources/${sourceId}/events/stream`), { timeout: UI_TIMEOUT })
      await clickToLoad(dash, dash.getByRole('link', { name: sourceName, exact: true }))
      const stream = await streamAnswered
      check(stream.status() === 200 && /^text\/event-stream/.test(stream.headers()['content-type'] || ''), `the event stream answered ${stream.status()} ${stream.headers()['content-type']}`)
      checkEq(await dash.locator('#debugger > li').count(), 0, 'events in the debugger before any was sent')

      const userId = `dash-user-${RUN}`
      const siteUrl = writePage(
        'dashboard-site',
        'A shop',
        `<button id="another" type="button">Send another event</button>
<script src="/vendor/analytics-next.js"></script>
<script>
  window.sendError = null
  var analytics = AnalyticsNext.AnalyticsBrowser.load(${JSON.stringify({ writeKey, cdnURL: SLUICE })})
  window.sent = (async function () {
    await analytics.identify(${JSON.stringify(userId)}, { email: 'dash@example.com', plan: 'pro' })
    await analytics.track('Dashboard Test', { tag: ${JSON.stringify(RUN)}, total: 42 })
    await analytics.page('Docs', 'Dashboard')
    return true
  })().catch(function (e) { window.sendError = String((e && e.message) || e); return false })
  document.getElementById('another').addEventListener('click', function () {
    analytics.track('After Rotation', { tag: ${JSON.stringify(RUN)} }).then(function () {
      document.getElementById('another').textContent = 'Sent.'
    })
  })
</script>`,
      )
      const site = await openPage(context, siteUrl)
      check(await site.evaluate(() => window.sent), `the site's calls failed: ${await site.evaluate(() => window.sendError)}`)

      await dash.bringToFront()
      await waitUntil('3 events in the live debugger', async () => (await dash.locator('#debugger > li').count()) >= 3)
      await sleep(300) // a duplicate would show here
      const summaries = (await dash.locator('#debugger > li > details > summary').allTextContents()).map((s) => {
        const m = s.match(/^#(\d+) (\S+) (.*?) — (\S+) · (\S+)$/)
        check(m, `debugger summary "${s}" is not "#seq type event — user · messageId"`)
        return { seq: Number(m[1]), type: m[2], name: m[3], user: m[4], messageId: m[5] }
      })
      checkEq(summaries.map((s) => [s.type, s.name, s.user]), [['page', 'Dashboard', userId], ['track', 'Dashboard Test', userId], ['identify', '', userId]], 'the debugger, newest first')
      check(summaries[0].seq > summaries[1].seq && summaries[1].seq > summaries[2].seq, `seqs not newest first: ${short(summaries)}`)
      const storedIds = (await admin('GET', `/api/v1/sources/${sourceId}/events?limit=10`)).events.map((e) => e.event.messageId).sort()
      checkEq(summaries.map((s) => s.messageId).sort(), storedIds, 'the debugger shows the stored events')
      const trackItem = dash.locator('#debugger > li').nth(1)
      check(!(await trackItem.locator('pre').isVisible()), 'an event JSON shown before it was selected')
      await trackItem.locator('summary').click()
      await trackItem.locator('pre').waitFor({ state: 'visible' })
      const shown = JSON.parse(await trackItem.locator('pre').textContent())
      checkEq(
        [shown.type, shown.event, shown.userId, shown.messageId, shown.properties, shown.context && shown.context.library && shown.context.library.name],
        ['track', 'Dashboard Test', userId, summaries[1].messageId, { tag: RUN, total: 42 }, 'analytics.js'],
        'the JSON of the selected track event',
      )

      // 6. The destination page's delivery log shows the three delivered; the test server has them.
      await clickToLoad(dash, navLink(dash, 'Destinations'))
      await clickToLoad(dash, dash.getByRole('link', { name: destName, exact: true }))
      checkEq(path(dash), `/ui/destinations/${destId}`, 'the destination link in the list')
      const deliveredOps = async () =>
        (await deliveryRows(dash)).filter((r) => r.outcome === 'delivered').flatMap(opsOf).filter((op) => op.identifiers && op.identifiers.id === userId)
      await reloadUntil(dash, destUrl, 'identify, track and page delivered in the delivery log', async () => {
        const ops = await deliveredOps()
        return ops.some((o) => o.action === 'identify') && ops.some((o) => o.action === 'event' && o.name === 'Dashboard Test') && ops.some((o) => o.action === 'page')
      })
      const rows = await deliveryRows(dash)
      const delivered = rows.filter((r) => r.outcome === 'delivered')
      check(delivered.every((r) => r.http === '200' && r.outcomeClass.includes('outcome-delivered')), `delivered rows: ${short(delivered)}`)
      check(Number(await textOf(dash, '#delivered')) >= 3, `Delivered: ${await textOf(dash, '#delivered')}`)
      const firstRow = dash.locator('table.log tbody tr').first()
      check(!(await firstRow.locator('pre').first().isVisible()), 'a request body shown before it was asked for')
      await firstRow.getByText('Request and response').click()
      await firstRow.locator('pre').first().waitFor({ state: 'visible' })
      const requestShown = await firstRow.locator('pre').first().textContent()
      const received = (await cio('GET', '/_test/requests')).filter((r) => r.method === 'POST').map((r) => r.body)
      check(received.includes(requestShown), `the request body shown is not one the test server received: ${short(requestShown)}`)
      const accepted = await acceptedFor(userId)
      const byAction = (a, name) => accepted.filter((o) => o.action === a && (name === undefined || o.name === name))
      checkEq(byAction('identify').map((o) => o.attributes.email), ['dash@example.com'], 'identify accepted by the test server')
      checkEq(byAction('event', 'Dashboard Test').map((o) => o.attributes.total), [42], 'track accepted by the test server')
      checkEq(byAction('page').length, 1, 'page accepted by the test server')

      // 7. Customer.io stops accepting the key; the next event's delivery is refused, and the
      // destinations list (refreshed by htmx, never reloaded) says so.
      await clickToLoad(dash, navLink(dash, 'Destinations'))
      const row = dash.locator('#destination-rows tr', { has: dash.getByRole('link', { name: destName, exact: true }) })
      checkEq(await textOf(row, '.state'), 'active', 'the status in the destinations list')
      await dash.evaluate(() => {
        window.notReloaded = true
      })
      let refreshes = 0
      dash.on('response', (r) => {
        if (r.url() === `${SLUICE}/ui/destinations/rows` && r.status() === 200) refreshes++
      })
      await cio('POST', '/_test/credentials', { site_id: SITE_ID, api_key: NEW_KEY })
      await button(site, 'Send another event').click()
      await waitUntil('the site to send "After Rotation"', async () => (await textOf(site, '#another')) === 'Sent.')
      await waitUntil('"credentials rejected" in the destinations list', async () => (await textOf(row, '.state')) === 'credentials rejected', 20000)
      check(await dash.evaluate(() => window.notReloaded === true), 'the destinations list was reloaded')
      check(refreshes >= 1, 'no htmx refresh of /ui/destinations/rows seen')
      check((await textOf(row, '.error-text')).includes('401'), `the list's last error: ${await textOf(row, '.error-text')}`)
      checkEq((await acceptedFor(userId)).filter((o) => o.name === 'After Rotation').length, 0, '"After Rotation" accepted with the old key')

      // 8. The new key through the "Credentials" form: active again, and the held-back event arrives.
      await clickToLoad(dash, row.getByRole('link', { name: destName, exact: true }))
      checkEq(await textOf(dash, '#state'), 'credentials rejected', 'the status on the destination page')
      const creds = await Promise.all(['#site_id', '#api_key', '#track_url'].map((s) => dash.locator(s).inputValue()))
      checkEq(creds, [SITE_ID, '', CIO], 'the Credentials form (Site ID, API key, Track URL)')
      await typeInto(dash, '#api_key', NEW_KEY)
      await clickToLoad(dash, button(dash, 'Save credentials'))
      checkEq(await textOf(dash, '.notice'), 'Credentials saved and accepted by Customer.io.', 'the notice after "Save credentials"')
      const stateAfterSave = await textOf(dash, '#state')
      if (stateAfterSave !== 'active') console.log(`  the page answering "Save credentials" shows the status "${stateAfterSave}"`)
      check((await dash.locator('dl.facts').innerText()).includes(`${MASK}${NEW_KEY.slice(-4)}`), 'the new key, masked, on the page')
      await reloadUntil(dash, destUrl, 'the status "active" after saving the new key', async () => (await textOf(dash, '#state')) === 'active', UI_TIMEOUT)
      await waitUntil('"After Rotation" at the test server', async () => (await acceptedFor(userId)).some((o) => o.name === 'After Rotation'))
      await reloadUntil(dash, destUrl, '"After Rotation" delivered in the delivery log', async () =>
        (await deliveredOps()).some((o) => o.name === 'After Rotation'),
      )
      const outcomes = (await deliveryRows(dash)).map((r) => `${r.outcome} ${r.http}`)
      console.log(`  delivery log: ${outcomes.join(', ')}`)
      check(outcomes.includes('unauthorized 401'), `the refused attempt is not in the delivery log: ${short(outcomes)}`)
      await clickToLoad(dash, navLink(dash, 'Destinations'))
      await waitUntil('"active" in the destinations list', async () => (await textOf(row, '.state')) === 'active')
      await sleep(500)
      checkEq((await acceptedFor(userId)).filter((o) => o.name === 'After Rotation').length, 1, '"After Rotation" accepted')

      // Delete: the name must be typed.
      await clickToLoad(dash, row.getByRole('link', { name: destName, exact: true }))
      await typeInto(dash, '#confirm', 'not-its-name')
      await clickToLoad(dash, button(dash, 'Delete destination'))
      check((await textOf(dash, '#confirm-error')).includes(destName), `#confirm-error: ${await textOf(dash, '#confirm-error')}`)
      checkEq((await admin('GET', '/api/v1/destinations')).destinations.filter((d) => d.id === destId).length, 1, 'the destination after a wrong name')
      await typeInto(dash, '#confirm', destName)
      await clickToLoad(dash, button(dash, 'Delete destination'))
      checkEq(path(dash), '/ui/destinations', 'the page after deleting')
      checkEq(await dash.getByRole('link', { name: destName, exact: true }).count(), 0, 'the deleted destination in the list')
      checkEq((await admin('GET', '/api/v1/destinations')).destinations.filter((d) => d.id === destId).length, 0, 'the destination after deleting')

      checkPageErrors(dash, 'dashboard page errors')
      checkNoThirdParty(log)
    } finally {
      await recording.stop()
      // The next tests expect the test server's default credentials.
      await cio('POST', '/_test/credentials', { site_id: SITE_ID, api_key: API_KEY }).catch(() => {})
    }
  })

  // ---------------------------------------------------------------- keyboard

  test('dashboard by keyboard: the sign-in form filled and submitted with keys only; Tab from the top reaches the skip link, then the nav links', async (context) => {
    const recording = recordHtml(context)
    const log = watch(context)
    try {
      const page = await dashboardPage(context, `${SLUICE}/ui/login`)
      const focused = () =>
        page.evaluate(() => {
          const e = document.activeElement
          if (!e) return null
          const text = /^(A|BUTTON)$/.test(e.tagName) ? ' ' + e.textContent.trim() : ''
          return `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${text}`
        })
      // The token field has the focus on arrival; before it come the skip link and the brand.
      checkEq(await focused(), 'input#token', 'the focus on arrival at the sign-in page')
      await page.keyboard.press('Shift+Tab')
      checkEq(await focused(), 'a sluice', 'Shift+Tab from the token field')
      await page.keyboard.press('Shift+Tab')
      checkEq(await focused(), 'a Skip to content', 'Shift+Tab again')
      await page.keyboard.press('Tab')
      await page.keyboard.press('Tab')
      checkEq(await focused(), 'input#token', 'Tab twice')
      // A wrong token, then Enter: the error, and the focus back in the field.
      await page.keyboard.type('wrong-token')
      let loaded = page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame() })
      await page.keyboard.press('Enter')
      await loaded
      await page.waitForLoadState('load')
      check(await page.locator('#token-error').isVisible(), 'no error after a wrong token')
      checkEq(await focused(), 'input#token', 'the focus after a wrong token')
      checkEq(await page.locator('#token').getAttribute('aria-describedby'), 'token-help token-error', "the token field's description")
      // The right token, Tab to "Sign in", Enter.
      await page.keyboard.type(TOKEN)
      await page.keyboard.press('Tab')
      checkEq(await focused(), 'button Sign in', 'Tab from the token field')
      loaded = page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame() })
      await page.keyboard.press('Enter')
      await loaded
      await page.waitForLoadState('load')
      checkEq(path(page), '/ui/destinations', 'the page after signing in by keyboard')

      // Signed in, from the top: the skip link (visible once focused), then the nav links.
      checkEq(await focused(), 'body', 'the focus on arrival')
      await page.keyboard.press('Tab')
      checkEq(await focused(), 'a Skip to content', 'the first Tab')
      const skip = await page.evaluate(() => {
        const r = document.activeElement.getBoundingClientRect()
        const style = getComputedStyle(document.activeElement)
        return { inView: r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.width > 0, outline: style.outlineStyle }
      })
      check(skip.inView, 'the focused skip link is not on screen')
      check(skip.outline !== 'none', 'the focused skip link has no focus outline')
      const order = []
      for (let i = 0; i < 4; i++) {
        await page.keyboard.press('Tab')
        order.push(await focused())
      }
      checkEq(order, ['a sluice', 'a Sources', 'a Destinations', 'button Sign out'], 'Tab after the skip link')
      // Back to the skip link, Enter: the next Tab lands in the content, not in the nav.
      for (let i = 0; i < 4; i++) await page.keyboard.press('Shift+Tab')
      checkEq(await focused(), 'a Skip to content', 'Shift+Tab back to the skip link')
      await page.keyboard.press('Enter')
      await waitUntil('#main in the URL', async () => new URL(page.url()).hash === '#main', 5000)
      await page.keyboard.press('Tab')
      checkEq(await focused(), 'a Add destination → Customer.io', 'Tab after following the skip link')
      loaded = page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame() })
      await page.keyboard.press('Enter')
      await loaded
      checkEq(path(page), '/ui/destinations/new', 'Enter on "Add destination → Customer.io"')
      await page.waitForLoadState('load')
      checkPageErrors(page, 'page errors')
      checkNoThirdParty(log)
    } finally {
      await recording.stop()
    }
  })

  // ---------------------------------------------------------------- narrow screen

  test(
    'dashboard on a narrow screen (375×800): no horizontal page overflow on any page (destinations, a destination with its request body open, sources, a source, sign-in)',
    async (context) => {
      const recording = recordHtml(context)
      const log = watch(context)
      // Set up through the admin API: a destination with a delivery whose request body is wide.
      const source = await admin('POST', '/api/v1/sources', { name: `dash-narrow-${RUN}`, kind: 'server' })
      const dest = await admin('POST', '/api/v1/destinations', {
        name: `dash-narrow-cio-${RUN}`,
        type: 'customerio',
        sources: [source.id],
        config: { site_id: SITE_ID, api_key: API_KEY, track_url: CIO },
      })
      try {
        const r = await fetch(`${SLUICE}/v1/track`, {
          method: 'POST',
          headers: { Authorization: `Basic ${Buffer.from(`${source.write_key}:`).toString('base64')}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({
            userId: `narrow-user-${RUN}`,
            event: 'Viewed A Rather Long Product Page Name Without Spaces'.replace(/ /g, ''),
            properties: { url: `https://shop.example/${'category/'.repeat(12)}product?ref=${'x'.repeat(120)}` },
          }),
        })
        check(r.ok, `POST /v1/track: ${r.status}`)
        await waitUntil('the delivery', async () => (await admin('GET', `/api/v1/destinations/${dest.id}/deliveries`)).deliveries.some((d) => d.outcome === 'delivered'))

        const page = await dashboardPage(context)
        checkEq([page.viewportSize().width, page.viewportSize().height], [375, 800], 'the viewport')
        await signIn(page)
        const overflow = () =>
          page.evaluate(() => {
            const width = innerWidth
            const out = []
            if (document.documentElement.scrollWidth > width) {
              for (const el of document.body.querySelectorAll('*')) {
                const right = el.getBoundingClientRect().right
                const parent = el.parentElement.getBoundingClientRect().right
                if (right > width + 0.5 && parent <= width + 0.5) {
                  out.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${el.className ? '.' + String(el.className).trim().split(/\s+/).join('.') : ''} to ${Math.round(right)} px`)
                }
              }
            }
            return { width, scrollWidth: document.documentElement.scrollWidth, out }
          })
        const checkFits = async (what) => {
          const o = await overflow()
          check(o.scrollWidth <= o.width, `${what}: the page is ${o.scrollWidth} px wide in a ${o.width} px window; too wide: ${short(o.out, 600)}`)
        }
        await checkFits('/ui/destinations')
        check(await page.getByRole('link', { name: dest.name, exact: true }).isVisible(), 'the destination in the list')
        await clickToLoad(page, page.getByRole('link', { name: dest.name, exact: true }))
        await checkFits(`/ui/destinations/${dest.id}`)
        const row = page.locator('table.log tbody tr').first()
        await row.getByText('Request and response').click()
        await row.locator('pre').first().waitFor({ state: 'visible' })
        await checkFits(`/ui/destinations/${dest.id} with a request body open`)
        await clickToLoad(page, navLink(page, 'Destinations'))
        await clickToLoad(page, page.getByRole('link', { name: 'Add destination → Customer.io' }))
        await page.locator('summary', { hasText: 'Advanced' }).click()
        await checkFits('/ui/destinations/new')
        // The other pages too.
        await clickToLoad(page, navLink(page, 'Sources'))
        await checkFits('/ui/sources')
        await clickToLoad(page, page.getByRole('link', { name: source.name, exact: true }))
        await checkFits(`/ui/sources/${source.id}`)
        await clickToLoad(page, button(page, 'Sign out'))
        checkEq(path(page), '/ui/login', 'the page after signing out')
        await checkFits('/ui/login')
        checkPageErrors(page, 'page errors')
        checkNoThirdParty(log)
      } finally {
        await recording.stop()
        await admin('DELETE', `/api/v1/destinations/${dest.id}`).catch(() => {})
      }
    },
    { viewport: { width: 375, height: 800 } },
  )

  // ---------------------------------------------------------------- no secret in any page

  test('dashboard: no page showed an API key (typed, rotated) or the admin token', async () => {
    const pages = await Promise.all(seenHtml)
    check(pages.length > 0, 'no dashboard page recorded')
    const unread = pages.filter((p) => p.error)
    check(unread.length === 0, `pages whose HTML could not be read: ${short(unread)}`)
    const leaks = []
    for (const p of pages) {
      for (const [what, secret] of Object.entries(SECRETS)) if (p.body.includes(secret)) leaks.push(`${what} in ${p.status} ${p.url}`)
    }
    check(leaks.length === 0, `secrets in the HTML: ${short(leaks, 1000)}`)
    // The check sees the pages that show the key, masked.
    const destinationPages = pages.filter((p) => /\/ui\/destinations\/dst_/.test(p.url))
    if (destinationPages.length) {
      check(destinationPages.some((p) => p.body.includes(`${MASK}${API_KEY.slice(-4)}`)), 'no destination page showed the masked key')
    }
    console.log(`  ${pages.length} HTML pages and fragments checked (${new Set(pages.map((p) => new URL(p.url).pathname.replace(/dst_\w+|src_\w+/, '{id}'))).size} routes)`)
  })
}
