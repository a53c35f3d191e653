//! The dashboard over plain HTTP (forms without JavaScript): sign-in, CSRF, sources and the
//! snippet, creating a Customer.io destination with inline errors, and no secret in any page.

mod common;

use common::*;
use serde_json::json;
use sluice_testkit::{CioOptions, CioTestServer};

struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Browser {
    /// Signs in with the admin token and keeps the session cookie.
    async fn sign_in(app: &TestApp) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let wrong = http
            .post(format!("{}/ui/login", app.base))
            .form(&[("token", "nope")])
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        let body = wrong.text().await.unwrap();
        assert!(body.contains("not the admin token"), "{body}");
        let response = http
            .post(format!("{}/ui/login", app.base))
            .form(&[("token", TOKEN)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
        let cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let cookie = cookie.split(';').next().unwrap().to_owned();
        Self {
            http,
            base: app.base.clone(),
            cookie,
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String, Option<String>) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (
            response.status().as_u16(),
            response.text().await.unwrap(),
            location,
        )
    }
}

/// The CSRF token in a page's forms.
fn csrf(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a form with a CSRF token") + marker.len();
    page[start..start + 64].to_owned()
}

#[tokio::test]
async fn pages_need_a_session_and_forms_need_its_csrf_token() {
    let app = spawn().await;
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for page in ["/ui/sources", "/ui/destinations", "/ui/destinations/new"] {
        let response = anonymous
            .get(format!("{}{page}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{page}");
        assert_eq!(response.headers()["location"], "/ui/login");
    }
    let browser = Browser::sign_in(&app).await;
    let (status, page) = browser.get("/ui/sources").await;
    assert_eq!(status, 200);
    let (status, _, _) = browser
        .post(
            "/ui/sources",
            &[("csrf", "forged"), ("name", "web"), ("kind", "web")],
        )
        .await;
    assert_eq!(status, 403, "a forged CSRF token is refused");
    // The admin API takes the session cookie too, but a write needs the CSRF header.
    let api = |method: reqwest::Method| {
        browser
            .http
            .request(method, format!("{}/api/v1/sources", app.base))
            .header("cookie", &browser.cookie)
    };
    assert_eq!(
        api(reqwest::Method::GET).send().await.unwrap().status(),
        200
    );
    let without = api(reqwest::Method::POST)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 403);
    let with = api(reqwest::Method::POST)
        .header("x-csrf-token", csrf(&page))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 201);
    // Signing out ends the session.
    let (status, _, location) = browser.post("/ui/logout", &[("csrf", &csrf(&page))]).await;
    assert_eq!((status, location.as_deref()), (303, Some("/ui/login")));
    let (status, _) = browser.get("/ui/sources").await;
    assert_eq!(status, 303);
}

#[tokio::test]
async fn sign_in_create_a_source_and_a_customerio_destination_with_forms_only() {
    let app = spawn_with(|config| config.delivery.poll_interval = "10ms".into()).await;
    let cio = CioTestServer::start(CioOptions::default()).await.unwrap();
    let browser = Browser::sign_in(&app).await;

    let (_, page) = browser.get("/ui/sources").await;
    let token = csrf(&page);
    let (status, _, location) = browser
        .post(
            "/ui/sources",
            &[
                ("csrf", &token),
                ("name", "website"),
                ("kind", "web"),
                ("allowed_origins", ""),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let source_page = location.expect("redirect to the source");
    let (status, page) = browser.get(&source_page).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("sluice.js") && page.contains("id=\"snippet\""),
        "the snippet is shown"
    );
    assert!(page.contains("Copy snippet"));
    assert!(
        page.contains("analytics-swift")
            && page.contains("analytics-kotlin")
            && page.contains("cdnURL")
    );
    let (status, page, _) = browser
        .post(
            "/ui/sources",
            &[("csrf", &token), ("name", "website"), ("kind", "web")],
        )
        .await;
    assert_eq!(status, 422, "a duplicate name is shown on the form");
    assert!(page.contains("id=\"name-error\""), "{page}");

    // A rejected key is shown beside its field, and nothing is created.
    let (_, page) = browser.get("/ui/destinations/new").await;
    let token = csrf(&page);
    let (status, page, _) = browser
        .post(
            "/ui/destinations",
            &[
                ("csrf", &token),
                ("name", "cio-prod"),
                ("site_id", "SITE_ID_TEST"),
                ("api_key", "WRONG_KEY_123"),
                ("region", "us"),
                ("track_url", &cio.url()),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("id=\"api_key-error\""), "{page}");
    assert!(
        !page.contains("WRONG_KEY_123"),
        "the key typed is not echoed back"
    );
    let (_, list) = browser.get("/ui/destinations").await;
    assert!(list.contains("No destinations yet"));

    let (status, _, location) = browser
        .post(
            "/ui/destinations",
            &[
                ("csrf", &token),
                ("name", "cio-prod"),
                ("site_id", "SITE_ID_TEST"),
                ("api_key", "API_KEY_TEST"),
                ("region", "us"),
                ("track_url", &cio.url()),
            ],
        )
        .await;
    assert_eq!(status, 303, "Create destination");
    let destination_page = location.unwrap();
    // The pipeline is live at once: an event reaches the test server.
    let source = app
        .server
        .store
        .list_sources()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == "website")
        .unwrap();
    app.post_ok(
        "/v1/track",
        &source.write_key,
        &json!({"userId": "u1", "event": "Signed Up", "messageId": "m1"}),
    )
    .await;
    eventually("a delivery", || (!cio.accepted().is_empty()).then_some(())).await;
    let (status, page) = browser.get(&destination_page).await;
    assert_eq!(status, 200);
    assert!(page.contains("••••TEST"), "the key is masked");
    assert!(
        !page.contains("API_KEY_TEST"),
        "no secret in the page source"
    );
    let page = eventually_async("a delivered row in the delivery log", || async {
        let (_, page) = browser.get(&destination_page).await;
        page.contains("outcome-delivered").then_some(page)
    })
    .await;
    assert!(
        page.contains("{&quot;batch&quot;:["),
        "the exact request body is shown"
    );

    // Delete needs the name typed.
    let token = csrf(&page);
    let (status, page, _) = browser
        .post(
            &format!("{destination_page}/delete"),
            &[("csrf", &token), ("confirm", "nope")],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("id=\"confirm-error\""));
    let (status, _, location) = browser
        .post(
            &format!("{destination_page}/delete"),
            &[("csrf", &token), ("confirm", "cio-prod")],
        )
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/ui/destinations"))
    );

    // Static assets are served with the right types.
    for (path, kind) in [
        ("/ui/assets/htmx.min.js", "javascript"),
        ("/ui/assets/app.js", "javascript"),
        ("/ui/assets/style.css", "text/css"),
    ] {
        let response = browser
            .http
            .get(format!("{}{path}", browser.base))
            .send()
            .await
            .unwrap();
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .contains(kind),
            "{path}"
        );
    }
}
