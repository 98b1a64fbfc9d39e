//! `ocsp-origin bench`: a thread-per-core load generator that models a CDN
//! cache drop against an origin, checks every answer, and exports what capacity
//! planning needs.

pub mod report;
pub mod results;
