//! One module per behaviour area; under `cli::` so `scripts/test -E 'test(/cli/)'` picks
//! them all.

mod docs;
mod errors;
mod first_hour;
mod schedule;
mod submit;
mod up;
