//! The trends service end to end: the real `Service` on the embedded broker with a fresh
//! database per test (PostgreSQL when `DATABASE_URL` says so, else a SQLite file).

mod effect;
mod emerging;
mod helpers;
mod hierarchy;
mod history;
mod impact;
mod late;
mod lifecycle;
mod ops_page;
mod preview;
mod restart;
mod sessions;
mod taxonomy;
