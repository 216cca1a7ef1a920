//! The OpenAPI document at `/openapi.json`: every documented operation is a route that answers,
//! and every route of the check and SDK APIs is documented.

use crate::helpers::*;
use crate::tenant::declared_routes;
use serde_json::Value;
use std::collections::BTreeSet;

#[tokio::test]
async fn the_document_matches_the_router() {
    let t = TestApp::spawn().await;
    let resp = t
        .http
        .get(format!("{}/openapi.json", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            assert!(op["responses"].is_object(), "{method} {path} has responses");
            documented.insert((method.clone(), path.clone()));
            // The route exists and answers: without credentials, a refusal that is not "no such
            // route" or "no such method".
            let resp = t
                .http
                .request(method.parse().unwrap(), format!("{}{path}", t.url))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            assert!(
                ![404, 405].contains(&status) && status < 500,
                "{method} {path}: {status}"
            );
            assert!(
                op["responses"].get(status.to_string()).is_some(),
                "{method} {path} answers {status}, which is not documented"
            );
        }
    }
    let api: BTreeSet<_> = declared_routes()
        .into_iter()
        .filter(|(_, p)| p.starts_with("/nl3/"))
        .collect();
    assert!(api.len() >= 7, "{api:?}");
    assert_eq!(
        api, documented,
        "the check and SDK routes and the documented operations differ"
    );

    // Every `$ref` names a schema that exists.
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &part[..part.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "missing schema {name}"
        );
    }
}
