//! gantry-trust: image signatures and the trust policy.
