//! The stream-scoped session cookie of API.md.

use actix_web::cookie::{Cookie, SameSite as CookieSameSite, time::Duration};

use crate::config::{SameSite, Settings};
use vestibule_actors::StreamKey;
use vestibule_actors::ids::CookieSecret;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "vestibule_session";

/// Path that scopes the cookie to one stream.
pub fn cookie_path(settings: &Settings, stream: &StreamKey) -> String {
    format!(
        "{}/space/{}/stream/{}",
        settings.server.public_base_path, stream.space, stream.stream
    )
}

fn base<'a>(settings: &Settings, stream: &StreamKey, value: String) -> Cookie<'a> {
    let mut cookie = Cookie::new(SESSION_COOKIE, value);
    cookie.set_path(cookie_path(settings, stream));
    cookie.set_http_only(true);
    cookie.set_same_site(match settings.security.cookie_same_site {
        SameSite::Strict => CookieSameSite::Strict,
        SameSite::Lax => CookieSameSite::Lax,
        SameSite::None => CookieSameSite::None,
    });
    cookie.set_secure(settings.cookie_secure());
    cookie
}

/// The cookie set by a successful WHIP POST.
pub fn session_cookie<'a>(
    settings: &Settings,
    stream: &StreamKey,
    secret: &CookieSecret,
) -> Cookie<'a> {
    base(settings, stream, secret.reveal())
}

/// The cookie that clears it (`Max-Age=0`) when the session ends.
pub fn cleared_cookie<'a>(settings: &Settings, stream: &StreamKey) -> Cookie<'a> {
    let mut cookie = base(settings, stream, String::new());
    cookie.set_max_age(Duration::ZERO);
    cookie
}
