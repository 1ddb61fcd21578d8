//! The VM domain, with no CIM in it: VM definitions and their storage, their lifecycle on
//! the hypervisor's supervisor (typed states and transitions from
//! [`hypervisor_shim::lifecycle`]), snapshots, storage pools, jobs, the consoles' sessions
//! and the events that report what happened. The CIM mapping ([`crate::virt`]) is built on
//! it; nothing here knows of it.

pub mod console;
pub mod definition;
pub mod devices;
pub mod error;
pub mod events;
pub mod jobs;
pub mod manager;
pub mod pools;
pub mod startup;

pub use error::{ChangeError, VmError, VmErrorKind};

#[cfg(test)]
mod tests {
    /// The domain's code (its tests apart) reaches neither the CIM model nor the object
    /// manager, nor the mapping built on it: of the `cimom` crate it uses only the database
    /// and the lock helper.
    #[test]
    fn the_domain_knows_nothing_of_cim() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/vm");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let source = std::fs::read_to_string(&path).unwrap();
            let code_lines = source.lines().take_while(|l| *l != "#[cfg(test)]");
            for (number, line) in code_lines.enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                let cimom_beyond_store = code.match_indices("cimom::").any(|(at, _)| {
                    !["cimom::store", "cimom::lock"]
                        .iter()
                        .any(|allowed| code[at..].starts_with(allowed))
                });
                assert!(
                    !code.contains("cim_schema")
                        && !code.contains("crate::virt")
                        && !cimom_beyond_store,
                    "{}:{}: {line}",
                    path.display(),
                    number + 1
                );
            }
            checked += 1;
        }
        assert!(checked >= 9, "{checked} files read");
    }
}
