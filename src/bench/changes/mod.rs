//! Change-aware verification: what status an answer may carry while the
//! database changes under the run.
//!
//! The guarantee under test: once a status change is committed on the
//! primary, no answer to a request sent more than `bound` later carries an
//! older status, on any node. The bench cannot see commits, only the change
//! feed (`ocsp_changes`, written by the schema's triggers in the writer's
//! transaction; see `migrations/0002_change_feed.sql`), which its follower
//! (`super::follower`) polls on the primary. A change is *seen* at τ, the
//! instant the poll query that returned it came back: the row was visible to
//! that query's snapshot, so the writer had committed before the query read
//! it, so commit ≤ τ. (The instant before sending the query would not do: the
//! commit may fall between sending and the snapshot.) An answer to a request
//! sent at `t_send ≥ τ + bound` was therefore sent at least `bound` after the
//! commit and must carry that change's status or a newer one.
//!
//! Per certificate the bench keeps a [`History`]: the status read at start
//! and every change seen since, in the order of their `revision` (the feed's
//! own order of the row's states; at equal revisions a non-`D` change comes
//! after the `D`, as a REPLACE's insert wins over its delete). Judging an
//! answer sent at `t_send` ([`judge`]): `i*` is the newest step with
//! τ + bound ≤ t_send (the status read at start when there is none); the
//! answer is correct if it carries the status of `i*` or of any newer step.
//! Anything else may be a change the server saw before the bench's follower
//! did, so it waits ([`ChangeBook::judge_answer`] keeps it pending) and is
//! judged again after the run and a final poll; only then is it wrong.
//!
//! A judgment is final only when the follower is not behind: every change it
//! has not seen yet will be seen after its last poll returned (`seen_until`),
//! so it cannot be the `i*` of a request sent before `seen_until + bound`.
//! Answers to later requests wait too, so a stalled follower can delay a
//! verdict, never make a wrong one.
//!
//! `history` holds the rule itself: a certificate's [`History`] and [`judge`],
//! pure functions of times and states. `book` holds the [`ChangeBook`] the
//! generator threads and the follower share: it applies the feed's rows,
//! judges answers as they arrive, keeps the undecidable ones pending and
//! counts what the report shows.

mod book;
mod history;

pub use self::book::{ChangeBook, ChangeRow, Check, FeedCounts, LateWrong, MAX_PENDING};
pub use self::history::{explain, insert, judge, History, Judgment, State, Step, Track};
