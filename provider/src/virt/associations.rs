//! The association instances of `root/virt`, one builder per association class: which
//! host, VM, device, setting, pool, service, capability and job paths each one pairs.

use cim_schema::{Class, Instance, ObjectPath, Value};

use super::build::u16s;
use super::instances::{
    device_pairs, rasd_paths, reference, snapshot_view, text, ClassBuilder, Model,
    MIGRATION_SETTINGS,
};
use super::paths::{self, class, Pool};
use crate::vm::definition::VmDefinition;
use cimom::dispatch::provider::build_instance as build;

/// ElementEffects "Manages": the console service manages each VM's serial console.
const MANAGES: u16 = 5;

/// The association classes these providers serve, each with its builder.
pub const ASSOCIATIONS: &[ClassBuilder] = &[
    ClassBuilder {
        class: class::HOSTED_DEPENDENCY,
        build: hosted_dependency,
    },
    ClassBuilder {
        class: class::HOSTED_SERVICE,
        build: hosted_service,
    },
    ClassBuilder {
        class: class::AFFECTED_JOB_ELEMENT,
        build: affected_job_element,
    },
    ClassBuilder {
        class: class::OWNING_JOB_ELEMENT,
        build: owning_job_element,
    },
    ClassBuilder {
        class: class::HOSTED_RESOURCE_POOL,
        build: hosted_resource_pool,
    },
    ClassBuilder {
        class: class::SETTINGS_DEFINE_CAPABILITIES,
        build: settings_define_capabilities,
    },
    ClassBuilder {
        class: class::ELEMENT_ALLOCATED_FROM_POOL,
        build: element_allocated_from_pool,
    },
    ClassBuilder {
        class: class::RESOURCE_ALLOCATION_FROM_POOL,
        build: resource_allocation_from_pool,
    },
    ClassBuilder {
        class: class::SNAPSHOT_OF,
        build: snapshot_of,
    },
    ClassBuilder {
        class: class::LAST_APPLIED,
        build: last_applied,
    },
    ClassBuilder {
        class: class::SYSTEM_DEVICE,
        build: system_device,
    },
    ClassBuilder {
        class: class::SETTINGS_DEFINE_STATE,
        build: settings_define_state,
    },
    ClassBuilder {
        class: class::ELEMENT_SETTING_DATA,
        build: element_setting_data,
    },
    ClassBuilder {
        class: class::SETTING_DATA_COMPONENT,
        build: setting_data_component,
    },
    ClassBuilder {
        class: class::SERVICE_ACCESS_BY_SAP,
        build: service_access_by_sap,
    },
    ClassBuilder {
        class: class::SERVICE_AFFECTS_ELEMENT,
        build: service_affects_element,
    },
    ClassBuilder {
        class: class::SAP_AVAILABLE_FOR_ELEMENT,
        build: sap_available_for_element,
    },
    ClassBuilder {
        class: class::HOSTED_ACCESS_POINT,
        build: hosted_access_point,
    },
    ClassBuilder {
        class: class::REMOTE_ACCESS_AVAILABLE,
        build: remote_access_available,
    },
    ClassBuilder {
        class: class::ELEMENT_CAPABILITIES,
        build: element_capabilities,
    },
];

/// An instance of association `class` between `a` (its `first` end) and `b` (`second`).
fn pair(
    class: &Class,
    first: &'static str,
    a: ObjectPath,
    second: &'static str,
    b: ObjectPath,
) -> Instance {
    build(class, vec![(first, reference(a)), (second, reference(b))])
}

/// The VMs' definitions.
fn vms<'a>(model: &'a Model) -> impl Iterator<Item = &'a VmDefinition> + 'a {
    model.vms.iter().map(|(d, _)| d)
}

fn hosted_dependency(class: &Class, model: &Model) -> Vec<Instance> {
    // DSP1042: the host is the Antecedent (libvirt-cim has the ends the other way round).
    vms(model)
        .map(|d| {
            pair(
                class,
                "Antecedent",
                paths::host(model.hostname),
                "Dependent",
                paths::system(&d.name),
            )
        })
        .collect()
}

fn hosted_service(class: &Class, model: &Model) -> Vec<Instance> {
    [
        paths::service(model.hostname),
        paths::snapshot_service(model.hostname),
        paths::pool_service(model.hostname),
        paths::migration_service(model.hostname),
        paths::text_redirection_service(model.hostname),
    ]
    .into_iter()
    .map(|service| {
        pair(
            class,
            "Antecedent",
            paths::host(model.hostname),
            "Dependent",
            service,
        )
    })
    .collect()
}

fn affected_job_element(class: &Class, model: &Model) -> Vec<Instance> {
    model
        .jobs
        .iter()
        .map(|j| {
            let mut a = pair(
                class,
                "AffectedElement",
                paths::system(&j.vm),
                "AffectingElement",
                paths::job(&j.id),
            );
            // An import creates its VM (5: Create); other jobs are 1: Other, described.
            if j.name.starts_with("ImportSystemDefinition") {
                a.set("ElementEffects", u16s(&[5]));
            } else {
                let effect = if j.name.starts_with("ExportSystemDefinition") {
                    "export"
                } else {
                    "state change"
                };
                a.set("ElementEffects", u16s(&[1]));
                a.set(
                    "OtherElementEffectsDescriptions",
                    Value::Array(vec![Some(text(effect))]),
                );
            }
            a
        })
        .collect()
}

fn owning_job_element(class: &Class, model: &Model) -> Vec<Instance> {
    model
        .jobs
        .iter()
        .map(|j| {
            pair(
                class,
                "OwningElement",
                paths::system(&j.vm),
                "OwnedElement",
                paths::job(&j.id),
            )
        })
        .collect()
}

fn hosted_resource_pool(class: &Class, model: &Model) -> Vec<Instance> {
    model
        .pools()
        .iter()
        .map(|p| {
            pair(
                class,
                "GroupComponent",
                paths::host(model.hostname),
                "PartComponent",
                paths::pool(p),
            )
        })
        .collect()
}

fn settings_define_capabilities(class: &Class, model: &Model) -> Vec<Instance> {
    let migration = MIGRATION_SETTINGS.iter().map(|(kind, _, value_role)| {
        let mut sdc = pair(
            class,
            "GroupComponent",
            paths::migration_capabilities(),
            "PartComponent",
            paths::migration_setting_data(kind),
        );
        sdc.set("PropertyPolicy", Value::UInt16(0));
        sdc.set("ValueRole", Value::UInt16(*value_role));
        sdc.set("ValueRange", Value::UInt16(0));
        sdc
    });
    model
        .pools()
        .into_iter()
        .flat_map(|p| {
            paths::TEMPLATES
                .iter()
                .map(move |(role, value_role, value_range)| {
                    let mut sdc = pair(
                        class,
                        "GroupComponent",
                        paths::allocation_capabilities(&p),
                        "PartComponent",
                        paths::template(&p, role),
                    );
                    sdc.set("PropertyPolicy", Value::UInt16(0));
                    sdc.set("ValueRole", Value::UInt16(*value_role));
                    sdc.set("ValueRange", Value::UInt16(*value_range));
                    sdc
                })
        })
        .chain(migration)
        .collect()
}

fn element_allocated_from_pool(class: &Class, model: &Model) -> Vec<Instance> {
    let mut out: Vec<Instance> = vms(model)
        .flat_map(|d| {
            (0..d.vcpus)
                .map(|i| {
                    pair(
                        class,
                        "Antecedent",
                        paths::pool(&Pool::Processor),
                        "Dependent",
                        paths::processor(&d.name, i),
                    )
                })
                .chain([pair(
                    class,
                    "Antecedent",
                    paths::pool(&Pool::Memory),
                    "Dependent",
                    paths::memory(&d.name),
                )])
                .collect::<Vec<_>>()
        })
        .collect();
    out.extend(
        model
            .allocations_from_pools()
            .into_iter()
            .map(|(p, device, _)| pair(class, "Antecedent", paths::pool(&p), "Dependent", device)),
    );
    out
}

fn resource_allocation_from_pool(class: &Class, model: &Model) -> Vec<Instance> {
    let mut out: Vec<Instance> = vms(model)
        .flat_map(|d| {
            [
                pair(
                    class,
                    "Antecedent",
                    paths::pool(&Pool::Processor),
                    "Dependent",
                    paths::proc_rasd(&d.name),
                ),
                pair(
                    class,
                    "Antecedent",
                    paths::pool(&Pool::Memory),
                    "Dependent",
                    paths::mem_rasd(&d.name),
                ),
            ]
        })
        .collect();
    out.extend(
        model
            .allocations_from_pools()
            .into_iter()
            .map(|(p, _, rasd)| pair(class, "Antecedent", paths::pool(&p), "Dependent", rasd)),
    );
    // A disk's storage allocation comes from its pool too.
    out.extend(model.vms.iter().flat_map(|(d, _)| {
        d.disks.iter().filter_map(|disk| {
            let pool = model.disk_pool(disk)?;
            Some(pair(
                class,
                "Antecedent",
                paths::pool(&Pool::Disk(pool.name.clone())),
                "Dependent",
                paths::storage_sasd(&d.name, &disk.device),
            ))
        })
    }));
    out
}

fn snapshot_of(class: &Class, model: &Model) -> Vec<Instance> {
    vms(model)
        .flat_map(|d| {
            d.snapshots.iter().map(|s| {
                pair(
                    class,
                    "Antecedent",
                    paths::system(&d.name),
                    "Dependent",
                    paths::snapshot(&d.name, &s.id),
                )
            })
        })
        .collect()
}

fn last_applied(class: &Class, model: &Model) -> Vec<Instance> {
    vms(model)
        .filter_map(|d| {
            let id = d.last_applied.as_deref()?;
            Some(pair(
                class,
                "Antecedent",
                paths::snapshot(&d.name, id),
                "Dependent",
                paths::system(&d.name),
            ))
        })
        .collect()
}

fn system_device(class: &Class, model: &Model) -> Vec<Instance> {
    let host = paths::host(model.hostname);
    let host_devices = (0..model.host.logical_cpus)
        .map(|i| paths::host_processor(model.hostname, i))
        .chain([paths::host_memory(model.hostname)])
        .map(|dev| pair(class, "GroupComponent", host.clone(), "PartComponent", dev))
        .collect::<Vec<_>>();
    host_devices
        .into_iter()
        .chain(vms(model).flat_map(|d| {
            let system = paths::system(&d.name);
            (0..d.vcpus)
                .map(|i| paths::processor(&d.name, i))
                .chain([paths::memory(&d.name)])
                .chain(device_pairs(d).into_iter().map(|(device, _)| device))
                .map(move |dev| {
                    pair(
                        class,
                        "GroupComponent",
                        system.clone(),
                        "PartComponent",
                        dev,
                    )
                })
                .collect::<Vec<_>>()
        }))
        .collect()
}

fn settings_define_state(class: &Class, model: &Model) -> Vec<Instance> {
    vms(model)
        .flat_map(|d| {
            let mut out = vec![pair(
                class,
                "ManagedElement",
                paths::system(&d.name),
                "SettingData",
                paths::setting_data(&d.name),
            )];
            out.extend((0..d.vcpus).map(|i| {
                pair(
                    class,
                    "ManagedElement",
                    paths::processor(&d.name, i),
                    "SettingData",
                    paths::proc_rasd(&d.name),
                )
            }));
            out.push(pair(
                class,
                "ManagedElement",
                paths::memory(&d.name),
                "SettingData",
                paths::mem_rasd(&d.name),
            ));
            out.extend(
                device_pairs(d).into_iter().map(|(device, rasd)| {
                    pair(class, "ManagedElement", device, "SettingData", rasd)
                }),
            );
            out
        })
        .collect()
}

fn element_setting_data(class: &Class, model: &Model) -> Vec<Instance> {
    vms(model)
        .map(|d| {
            let mut esd = pair(
                class,
                "ManagedElement",
                paths::system(&d.name),
                "SettingData",
                paths::setting_data(&d.name),
            );
            // IsDefault 1 (is default), IsCurrent 1 (is current), IsNext 1 (is next).
            for property in ["IsDefault", "IsCurrent", "IsNext"] {
                if class.property(property).is_some() {
                    esd.set(property, Value::UInt16(1));
                }
            }
            esd
        })
        .collect()
}

fn setting_data_component(class: &Class, model: &Model) -> Vec<Instance> {
    // The VM's settings and each snapshot's (DSP1057 and the snapshot profile: a
    // snapshot is a VSSD with its RASDs).
    vms(model)
        .flat_map(|d| {
            let own = (paths::setting_data(&d.name), rasd_paths(d));
            let taken = d.snapshots.iter().map(|s| {
                (
                    paths::snapshot(&d.name, &s.id),
                    rasd_paths(&snapshot_view(d, s)),
                )
            });
            std::iter::once(own)
                .chain(taken)
                .flat_map(|(vssd, rasds)| {
                    rasds.into_iter().map(move |rasd| {
                        pair(class, "GroupComponent", vssd.clone(), "PartComponent", rasd)
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn service_access_by_sap(class: &Class, model: &Model) -> Vec<Instance> {
    let service = paths::text_redirection_service(model.hostname);
    vms(model)
        .map(|d| {
            pair(
                class,
                "Antecedent",
                service.clone(),
                "Dependent",
                paths::text_sap(&d.name),
            )
        })
        .collect()
}

fn service_affects_element(class: &Class, model: &Model) -> Vec<Instance> {
    let service = paths::text_redirection_service(model.hostname);
    vms(model)
        .map(|d| {
            let mut a = pair(
                class,
                "AffectingElement",
                service.clone(),
                "AffectedElement",
                paths::system(&d.name),
            );
            a.set("ElementEffects", u16s(&[MANAGES]));
            a
        })
        .collect()
}

fn sap_available_for_element(class: &Class, model: &Model) -> Vec<Instance> {
    vms(model)
        .map(|d| {
            pair(
                class,
                "AvailableSAP",
                paths::text_sap(&d.name),
                "ManagedElement",
                paths::system(&d.name),
            )
        })
        .collect()
}

fn hosted_access_point(class: &Class, model: &Model) -> Vec<Instance> {
    // A VM's console is scoped by the VM (its keys say so); the URLs by the host that
    // serves them.
    vms(model)
        .flat_map(|d| {
            let urls = model.console_urls.of(&d.name).into_iter().map(|url| {
                pair(
                    class,
                    "Antecedent",
                    paths::host(model.hostname),
                    "Dependent",
                    paths::console_url(model.hostname, &d.name, &url),
                )
            });
            std::iter::once(pair(
                class,
                "Antecedent",
                paths::system(&d.name),
                "Dependent",
                paths::text_sap(&d.name),
            ))
            .chain(urls)
            .collect::<Vec<_>>()
        })
        .collect()
}

fn remote_access_available(class: &Class, model: &Model) -> Vec<Instance> {
    vms(model)
        .flat_map(|d| {
            model
                .console_urls
                .of(&d.name)
                .into_iter()
                .enumerate()
                .map(|(i, url)| {
                    let mut a = pair(
                        class,
                        "Antecedent",
                        paths::console_url(model.hostname, &d.name, &url),
                        "Dependent",
                        paths::text_sap(&d.name),
                    );
                    a.set("IsDefault", Value::Boolean(i == 0));
                    a.set("OrderOfAccess", Value::UInt16(i as u16 + 1));
                    a
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn element_capabilities(class: &Class, model: &Model) -> Vec<Instance> {
    let mut out: Vec<Instance> = [
        (
            paths::service(model.hostname),
            paths::management_capabilities(),
        ),
        (
            paths::snapshot_service(model.hostname),
            paths::snapshot_service_capabilities(),
        ),
        (
            paths::migration_service(model.hostname),
            paths::migration_capabilities(),
        ),
        (
            paths::text_redirection_service(model.hostname),
            paths::text_redirection_capabilities(),
        ),
        (
            paths::host(model.hostname),
            paths::host_state_capabilities(model.hostname),
        ),
    ]
    .into_iter()
    .map(|(element, caps)| pair(class, "ManagedElement", element, "Capabilities", caps))
    .collect();
    out.extend(model.pools().iter().map(|p| {
        pair(
            class,
            "ManagedElement",
            paths::pool(p),
            "Capabilities",
            paths::allocation_capabilities(p),
        )
    }));
    out.extend(vms(model).flat_map(|d| {
        [
            paths::state_capabilities(&d.name),
            paths::snapshot_capabilities(&d.name),
        ]
        .map(|caps| {
            pair(
                class,
                "ManagedElement",
                paths::system(&d.name),
                "Capabilities",
                caps,
            )
        })
    }));
    out
}
