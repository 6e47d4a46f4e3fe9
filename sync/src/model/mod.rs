//! Domain value types and rules shared by node and hub.
