use proptest::prelude::*;

use super::*;

fn templater(templates: &[&str]) -> RouteTemplater {
    RouteTemplater::new(
        &templates
            .iter()
            .map(|template| (*template).to_owned())
            .collect::<Vec<_>>(),
    )
}

#[test]
fn heuristics_replace_ids_uuids_hex_tokens_and_emails() {
    let templater = RouteTemplater::default();
    for (path, route) in [
        ("/api/users/42", "/api/users/{id}"),
        ("/api/users/42/orders/7", "/api/users/{id}/orders/{id}"),
        (
            "/objects/123e4567-E89B-12d3-a456-426614174000",
            "/objects/{uuid}",
        ),
        (
            "/commits/9fceb02d0ae598e95dc970b74767f19372d61af8",
            "/commits/{hex}",
        ),
        ("/files/0123456789abcdef", "/files/{hex}"),
        ("/share/AbC_123-xyz987654321QRS", "/share/{token}"),
        (
            "/users/bob.smith@example.com/profile",
            "/users/{email}/profile",
        ),
        ("/users/bob%40example.com", "/users/{email}"),
        ("/cards/4111-1111-1111-1111", "/cards/{id}"),
        ("/cards/4111%201111%201111%201111", "/cards/{id}"),
    ] {
        assert_eq!(templater.template(path), route, "{path}");
    }
}

#[test]
fn ordinary_segments_are_kept() {
    let templater = RouteTemplater::default();
    for path in [
        "/",
        "/api/v1/users",
        "/static/app.js",
        "/deadbeef",
        "/short_token_123",
        "/only-letters-but-long-enough-here",
        "/2026-11-25",
        "/a@b",
    ] {
        assert_eq!(templater.template(path), path);
    }
}

#[test]
fn trailing_slash_and_empty_segments_are_kept_and_query_ignored() {
    let templater = RouteTemplater::default();
    assert_eq!(templater.template("/users/42/"), "/users/{id}/");
    assert_eq!(templater.template("/users//42"), "/users//{id}");
    assert_eq!(
        templater.template("/users/42?token=abc#frag"),
        "/users/{id}"
    );
    assert_eq!(templater.template(""), "");
}

#[test]
fn configured_templates_win_over_heuristics() {
    let templater = templater(&["/api/users/{user}/orders/{order_id}", "/shop/{sku}"]);
    assert_eq!(
        templater.template("/api/users/bob/orders/A-17"),
        "/api/users/{user}/orders/{order_id}"
    );
    assert_eq!(
        templater.template("/api/users/bob/orders/A-17/"),
        "/api/users/{user}/orders/{order_id}/"
    );
    assert_eq!(templater.template("/shop/red-shirt"), "/shop/{sku}");
    assert_eq!(
        templater.template("/shop/red-shirt/extra"),
        "/shop/red-shirt/extra"
    );
    assert_eq!(templater.template("/shop/"), "/shop/");
}

#[test]
fn most_literal_template_wins_then_configured_order() {
    let templater = templater(&[
        "/api/{resource}/{id}",
        "/api/users/{id}",
        "/api/users/me",
        "/api/{a}/{b}",
    ]);
    assert_eq!(templater.template("/api/users/me"), "/api/users/me");
    assert_eq!(templater.template("/api/users/42"), "/api/users/{id}");
    assert_eq!(templater.template("/api/orders/42"), "/api/{resource}/{id}");
}

#[test]
fn rest_parameter_matches_the_remainder() {
    let templater = templater(&["/files/{*path}", "/files/public/{name}"]);
    assert_eq!(templater.template("/files/a/b/c.txt"), "/files/{*path}");
    assert_eq!(
        templater.template("/files/public/x.png"),
        "/files/public/{name}"
    );
    assert_eq!(
        templater.template("/files/public/x/y.png"),
        "/files/{*path}"
    );
    assert_eq!(templater.template("/files"), "/files");
    assert_eq!(templater.template("/files/"), "/files/");
}

#[test]
fn invalid_templates_are_reported_or_skipped() {
    for template in [
        "no-slash",
        "/a/{*rest}/b",
        "/a/x{id}",
        "/a/{}",
        "/a/{bad name}",
    ] {
        assert!(
            RouteTemplater::try_new(&[template.to_owned()]).is_err(),
            "{template}"
        );
    }
    let error = RouteTemplater::try_new(&["/a/{*rest}/b".to_owned()])
        .err()
        .map(|error| error.to_string());
    assert_eq!(
        error.as_deref(),
        Some("invalid route template \"/a/{*rest}/b\": `{*rest}` must be the last segment")
    );
    let templater = templater(&["broken{", "/ok/{id}"]);
    assert_eq!(templater.template("/ok/x"), "/ok/{id}");
}

#[test]
fn literal_segments_are_sanitised_and_cards_masked() {
    let templater = RouteTemplater::default();
    assert_eq!(templater.template("/a\nb/c"), "/a\\nb/c");
    assert_eq!(
        templater.template("/pay.4111111111111111"),
        "/pay.[CARD ****1111]"
    );
    assert!(templater.template(&"/x".repeat(2000)).len() <= MAX_ROUTE_LEN);
}

proptest! {
    #[test]
    fn any_path_templates_without_panicking(path in ".{0,200}") {
        let templater = templater(&["/api/{id}", "/files/{*rest}"]);
        let route = templater.template(&path);
        prop_assert!(route.len() <= MAX_ROUTE_LEN);
        prop_assert!(!route.chars().any(crate::sanitize::is_forbidden));
    }
}
