//! Orderflow's pure logic: exact decimals, order messages, the limit order
//! book, event-time candles and watermarks, and the timely operators that
//! run them. Nothing here does I/O; the `orderflow` binary wires sources and
//! sinks around it.

pub mod book;
pub mod dataflow;
pub mod decimal;
pub mod gen;
pub mod ids;
pub mod json;
pub mod order;
pub mod output;
pub mod partition;
pub mod views;
pub mod window;
