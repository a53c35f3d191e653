//! Dashboard sessions: signing in with the admin token gives a random session id in an
//! HttpOnly, SameSite=Strict cookie, and a CSRF token every form and state-changing request
//! must send back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const COOKIE: &str = "sluice_session";

/// How long a session lives without being used.
const IDLE_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (oldest dropped first), so sign-ins cannot grow memory without bound.
const MAX_SESSIONS: usize = 10_000;

struct Session {
    csrf: String,
    last_used: Instant,
}

#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session: `(session id, CSRF token)`.
    pub fn start(&self) -> (String, String) {
        let (id, csrf) = (
            sluice_store::new_secret_token(),
            sluice_store::new_secret_token(),
        );
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| now.duration_since(s.last_used) < IDLE_LIFETIME);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| id.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                last_used: now,
            },
        );
        (id, csrf)
    }

    /// The CSRF token of a live session (and marks it used).
    pub fn csrf(&self, id: &str) -> Option<String> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let session = sessions.get_mut(id)?;
        if session.last_used.elapsed() >= IDLE_LIFETIME {
            sessions.remove(id);
            return None;
        }
        session.last_used = Instant::now();
        Some(session.csrf.clone())
    }

    pub fn end(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// The session id in a request's cookies.
pub fn session_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The `Set-Cookie` value for a session (`Secure` when served over HTTPS).
pub fn cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn expired_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_start_answer_and_end() {
        let sessions = Sessions::default();
        let (id, csrf) = sessions.start();
        assert_ne!(id, csrf);
        assert_eq!(id.len(), 64);
        assert_eq!(sessions.csrf(&id), Some(csrf));
        assert_eq!(sessions.csrf("forged"), None);
        sessions.end(&id);
        assert_eq!(sessions.csrf(&id), None);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "theme=dark; sluice_session=abc; x=y".parse().unwrap(),
        );
        assert_eq!(session_id(&headers).as_deref(), Some("abc"));
        assert!(cookie("abc", true).contains("HttpOnly; SameSite=Strict; Secure"));
    }
}
