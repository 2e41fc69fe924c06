//! End-to-end tests: the real `lockbox` binary against a real daemon on a temp socket.
mod support;

mod agent;
mod api;
mod authz;
mod backup;
mod cluster;
mod compose;
mod crash;
mod delivery;
mod docker_cli;
mod docker_sdk;
mod faults;
mod formats;
mod grants;
mod keys;
mod nemesis;
mod no_plaintext_all;
mod node_authz;
mod plaintext;
mod revocation;
mod scale;
mod scan_cli;
mod secrets;
mod templating;
mod volumes;
