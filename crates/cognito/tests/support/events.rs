//! Cognito Pre authentication events in the shape the Cognito developer guide documents.

use serde_json::{json, Value};

/// The app client the function checks.
pub const CLIENT_ID: &str = "1example23456789";

/// A sign-in of `user` through [`CLIENT_ID`], with the context an app passes as
/// `ClientMetadata` in `InitiateAuth` (it arrives as `request.validationData`).
pub fn pre_authentication(user: &str) -> Value {
    json!({
        "version": "1",
        "region": "eu-west-1",
        "userPoolId": "eu-west-1_EXAMPLE",
        "userName": user,
        "callerContext": {
            "awsSdkVersion": "aws-sdk-js-3.600.0",
            "clientId": CLIENT_ID
        },
        "triggerSource": "PreAuthentication_Authentication",
        "request": {
            "userAttributes": {
                "sub": "4a7b5f3c-8d8e-4c8b-9a41-4f3a1f0b9e21",
                "email_verified": "true",
                "cognito:user_status": "CONFIRMED",
                "email": format!("{user}@example.com")
            },
            "validationData": {
                "ip": "203.0.113.7",
                "device": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                "location": "Berlin, DE",
                "additionalData": "{\"loc\":\"52.52,13.40\",\"session\":\"s-1\"}"
            },
            "userNotFound": false
        },
        "response": {}
    })
}
