//! Notices: what a page says about the action that led to it. After a form the answer is a
//! redirect (post/redirect/get) to a page whose query names one of a fixed list.

use axum::response::{IntoResponse, Response};

/// What a page says about the action that led to it: after a form, the answer is a redirect
/// to a page (so that a refresh repeats nothing) whose query names one of these. A fixed list,
/// so that a link cannot make a page say anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The form was sent before: nothing was done again.
    Again,
    Saved,
    Created,
    Locked,
    Unlocked,
    Revoked,
    Deleted,
    Sent,
    /// A company was created and its first admin invited.
    Invited,
    InvitationSent,
    InvitationCancelled,
    AdminRemoved,
    Enrolled,
    AlreadyEnrolled,
    /// Enrolled, and its person emailed a link to sign up.
    EnrolledInvited,
    Imported,
}

impl Notice {
    const ALL: [Notice; 16] = [
        Notice::Again,
        Notice::Saved,
        Notice::Created,
        Notice::Locked,
        Notice::Unlocked,
        Notice::Revoked,
        Notice::Deleted,
        Notice::Sent,
        Notice::Invited,
        Notice::InvitationSent,
        Notice::InvitationCancelled,
        Notice::AdminRemoved,
        Notice::Enrolled,
        Notice::AlreadyEnrolled,
        Notice::EnrolledInvited,
        Notice::Imported,
    ];

    fn code(self) -> &'static str {
        match self {
            Notice::Again => "again",
            Notice::Saved => "saved",
            Notice::Created => "created",
            Notice::Locked => "locked",
            Notice::Unlocked => "unlocked",
            Notice::Revoked => "revoked",
            Notice::Deleted => "deleted",
            Notice::Sent => "sent",
            Notice::Invited => "invited",
            Notice::InvitationSent => "invitation-sent",
            Notice::InvitationCancelled => "invitation-cancelled",
            Notice::AdminRemoved => "admin-removed",
            Notice::Enrolled => "enrolled",
            Notice::AlreadyEnrolled => "already-enrolled",
            Notice::EnrolledInvited => "enrolled-invited",
            Notice::Imported => "imported",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Notice::Again => "That form was already sent: nothing was done a second time.",
            Notice::Saved => "Saved.",
            Notice::Created => "Created.",
            Notice::Locked => "Locked.",
            Notice::Unlocked => "Unlocked.",
            Notice::Revoked => "Revoked.",
            Notice::Deleted => "Deleted.",
            Notice::Sent => "Sent.",
            Notice::Invited => "The company was created and its first admin has been invited.",
            Notice::InvitationSent => "The invitation has been sent.",
            Notice::InvitationCancelled => {
                "The invitation was cancelled: its link no longer works."
            }
            Notice::AdminRemoved => "The admin was removed.",
            Notice::Enrolled => "The account is enrolled.",
            Notice::AlreadyEnrolled => "That account was already enrolled.",
            Notice::EnrolledInvited => {
                "The account is enrolled, and its person has been invited by email to sign up."
            }
            Notice::Imported => "The file was imported.",
        }
    }

    /// The notice a page's query names (`done=…`), if any.
    pub fn from_query(query: Option<&str>) -> Option<Notice> {
        let code = query?.split('&').find_map(|kv| kv.strip_prefix("done="))?;
        Notice::ALL.into_iter().find(|n| n.code() == code)
    }
}

/// `path` with `done=<notice>` in its query (replacing any there).
pub fn with_notice(path: &str, notice: Notice) -> String {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let mut parts: Vec<&str> = query
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("done="))
        .collect();
    let done = format!("done={}", notice.code());
    parts.push(&done);
    format!("{base}?{}", parts.join("&"))
}

/// The answer to a form that did what it asked: back to a page (post/redirect/get), which says
/// what was done.
pub fn done(path: &str, notice: Notice) -> Response {
    axum::response::Redirect::to(&with_notice(path, notice)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_through_the_query_and_nothing_else_is_said() {
        for n in Notice::ALL {
            let url = with_notice("/companies/c1?page=2&done=saved", n);
            assert_eq!(url, format!("/companies/c1?page=2&done={}", n.code()));
            assert_eq!(
                Notice::from_query(url.split_once('?').map(|q| q.1)),
                Some(n)
            );
        }
        assert_eq!(with_notice("/me", Notice::Locked), "/me?done=locked");
        assert_eq!(Notice::from_query(Some("done=<script>")), None);
        assert_eq!(Notice::from_query(None), None);
    }
}
