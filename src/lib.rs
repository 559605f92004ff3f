//! nss-agent: the on-box log uploader of the Zscaler NSS appliance.
