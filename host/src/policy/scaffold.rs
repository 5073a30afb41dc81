//! `clonekeeper policy new`: writes a policy project that builds on this machine and passes
//! its own sample fixture.
