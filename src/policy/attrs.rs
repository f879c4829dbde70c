//! Packages named in a session's Access-Accept: Filter-Id, mcgate's own vendor
//! attributes, and the ones operators already send (Huawei Multicast-Profile 2011/93,
//! Juniper IGMP-Access-Name 4874/71 and IGMP-Access-Src-Name 4874/72, Ericsson/Redback
//! Mcast-MaxGroups 2352/35).

use super::Entitlement;
use crate::auth::ReplyAttrs;
use crate::wire::unhex;

pub const VENDOR_HUAWEI: u32 = 2011;
pub const VENDOR_JUNIPER: u32 = 4874;
pub const VENDOR_REDBACK: u32 = 2352;
/// mcgate's attributes (policies/freeradius/dictionary.mcgate): under the configured
/// vendor id.
use crate::radius::mcgate_attr::{MAX_GROUPS as MCGATE_MAX_GROUPS, PACKAGE as MCGATE_PACKAGE};

/// (vendor, type, value) of each well-formed vendor sub-attribute (RFC 2865 5.26).
fn vsas(attrs: &ReplyAttrs) -> Vec<(u32, u8, Vec<u8>)> {
    let mut out = vec![];
    for raw in attrs.vendor.iter().filter_map(|h| unhex(h)) {
        let Some(vendor) = raw.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])) else {
            continue;
        };
        let mut rest = &raw[4..];
        while rest.len() >= 2 {
            let len = rest[1] as usize;
            if len < 2 || len > rest.len() {
                break;
            }
            out.push((vendor, rest[0], rest[2..len].to_vec()));
            rest = &rest[len..];
        }
    }
    out
}

pub fn entitlement_from_attrs(attrs: &ReplyAttrs, vendor_id: u32) -> Entitlement {
    let mut e = Entitlement { packages: attrs.filter_ids.clone(), max_groups: None };
    let text = |v: &[u8]| String::from_utf8_lossy(v).trim_end_matches('\0').to_string();
    let int = |v: &[u8]| <[u8; 4]>::try_from(v).ok().map(u32::from_be_bytes);
    for (vendor, ty, v) in vsas(attrs) {
        match (vendor, ty) {
            (v_id, MCGATE_PACKAGE) if v_id == vendor_id => e.packages.push(text(&v)),
            (v_id, MCGATE_MAX_GROUPS) if v_id == vendor_id => e.max_groups = int(&v).or(e.max_groups),
            (VENDOR_HUAWEI, 93) | (VENDOR_JUNIPER, 71) | (VENDOR_JUNIPER, 72) => e.packages.push(text(&v)),
            (VENDOR_REDBACK, 35) => e.max_groups = int(&v).or(e.max_groups),
            _ => {}
        }
    }
    e.packages.sort();
    e.packages.dedup();
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vsa(vendor: u32, ty: u8, v: &[u8]) -> String {
        let mut b = vendor.to_be_bytes().to_vec();
        b.push(ty);
        b.push(v.len() as u8 + 2);
        b.extend_from_slice(v);
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn packages_from_every_source() {
        let attrs = ReplyAttrs {
            filter_ids: vec!["basic".into()],
            vendor: vec![
                vsa(32473, MCGATE_PACKAGE, b"sports"),
                vsa(2011, 93, b"huawei-pkg"),
                vsa(4874, 71, b"juniper-pkg"),
                vsa(4874, 72, b"juniper-ssm"),
                vsa(2352, 35, &7u32.to_be_bytes()),
                vsa(9, 1, b"cisco-avpair-ignored"),
                "00000".into(), // malformed hex: ignored
            ],
            ..Default::default()
        };
        let e = entitlement_from_attrs(&attrs, 32473);
        assert_eq!(e.packages, ["basic", "huawei-pkg", "juniper-pkg", "juniper-ssm", "sports"]);
        assert_eq!(e.max_groups, Some(7));
        // another vendor id configured: mcgate's attribute is not ours
        assert!(!entitlement_from_attrs(&attrs, 1).packages.contains(&"sports".to_string()));
    }
}
