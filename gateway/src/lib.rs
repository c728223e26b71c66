//! Penghubung: the regional Sistem Penghubung Layanan gateway.

pub mod auth;
pub mod catalog;
pub mod identity;
pub mod limits;
