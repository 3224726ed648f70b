//! Which GPUs need gnif/vendor-reset: AMD parts whose reset is broken without it.

use crate::pci_id::PciId;

const AMD: u16 = 0x1002;

/// Device IDs (vendor 1002) that vendor-reset handles, by family.
const DEVICES: &[(&str, &[u16])] = &[
    (
        "Polaris 10",
        &[
            0x67c0, 0x67c1, 0x67c2, 0x67c4, 0x67c7, 0x67d0, 0x67df, 0x67c8, 0x67c9, 0x67ca, 0x67cc,
            0x67cf, 0x6fdf,
        ],
    ),
    (
        "Polaris 11",
        &[
            0x67e0, 0x67e3, 0x67e8, 0x67eb, 0x67ef, 0x67ff, 0x67e1, 0x67e7, 0x67e9,
        ],
    ),
    (
        "Polaris 12",
        &[
            0x6980, 0x6981, 0x6985, 0x6986, 0x6987, 0x6995, 0x6997, 0x699f,
        ],
    ),
    (
        "Vega 10",
        &[
            0x6860, 0x6861, 0x6862, 0x6863, 0x6864, 0x6867, 0x6868, 0x6869, 0x686a, 0x686b, 0x686c,
            0x686d, 0x686e, 0x686f, 0x687f,
        ],
    ),
    (
        "Vega 20",
        &[0x66a0, 0x66a1, 0x66a2, 0x66a3, 0x66a4, 0x66a7, 0x66af],
    ),
    (
        "Navi 10",
        &[
            0x7310, 0x7312, 0x7318, 0x7319, 0x731a, 0x731b, 0x731e, 0x731f,
        ],
    ),
    ("Navi 14", &[0x7340, 0x7341, 0x7347, 0x734f]),
    ("Navi 12", &[0x7360, 0x7362]),
    ("MI100", &[0x738c]),
];

/// The GPU family when vendor-reset is needed for `id`.
pub(crate) fn family(id: PciId) -> Option<&'static str> {
    if id.vendor != AMD {
        return None;
    }
    DEVICES
        .iter()
        .find(|(_, devices)| devices.contains(&id.device))
        .map(|(family, _)| *family)
}

pub(crate) fn needs_vendor_reset(id: PciId) -> bool {
    family(id).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_families_and_nothing_else() {
        assert_eq!(family(PciId::new(0x1002, 0x67df)), Some("Polaris 10"));
        assert_eq!(family(PciId::new(0x1002, 0x738c)), Some("MI100"));
        assert_eq!(family(PciId::new(0x1002, 0x687f)), Some("Vega 10"));
        // Navi 21 resets fine; an NVIDIA ID with a Polaris device number is not a Polaris.
        assert!(!needs_vendor_reset(PciId::new(0x1002, 0x73bf)));
        assert!(!needs_vendor_reset(PciId::new(0x10de, 0x67df)));
    }

    #[test]
    fn table_has_the_documented_size() {
        let count: usize = DEVICES.iter().map(|(_, d)| d.len()).sum();
        assert_eq!(count, 13 + 9 + 8 + 15 + 7 + 8 + 4 + 2 + 1);
    }
}
