//! Printers of volumes and storage: PersistentVolumes, claims, StorageClasses, CSI objects.

use serde_json::{Value, json};

use super::{AGE, NAME, Printer, age, col, name, or_none, s};

fn access_modes(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|m| match s(m) {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub static PERSISTENTVOLUMES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Capacity",
            "string",
            "capacity is the description of the persistent volume's resources and capacity.",
            0,
        ),
        col(
            "Access Modes",
            "string",
            "accessModes contains all ways the volume can be mounted.",
            0,
        ),
        col(
            "Reclaim Policy",
            "string",
            "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
            0,
        ),
        col(
            "Status",
            "string",
            "phase indicates if a volume is available, bound to a claim, or released by a claim.",
            0,
        ),
        col(
            "Claim",
            "string",
            "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
            0,
        ),
        col(
            "StorageClass",
            "string",
            "storageClassName is the name of StorageClass to which this persistent volume belongs.",
            0,
        ),
        col(
            "VolumeAttributesClass",
            "string",
            "Name of VolumeAttributesClass to which this persistent volume belongs.",
            0,
        ),
        col(
            "Reason",
            "string",
            "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
            0,
        ),
        AGE,
        col(
            "VolumeMode",
            "string",
            "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
            1,
        ),
    ],
    cells: |o, now| {
        let spec = &o["spec"];
        let claim = match s(&spec["claimRef"]["name"]) {
            "" => String::new(),
            n => format!("{}/{n}", s(&spec["claimRef"]["namespace"])),
        };
        vec![
            name(o),
            json!(s(&spec["capacity"]["storage"])),
            json!(access_modes(&spec["accessModes"])),
            json!(s(&spec["persistentVolumeReclaimPolicy"])),
            json!(s(&o["status"]["phase"])),
            json!(claim),
            json!(s(&spec["storageClassName"])),
            json!(or_unset(s(&spec["volumeAttributesClassName"]))),
            json!(s(&o["status"]["reason"])),
            age(o, now),
            json!(s(&spec["volumeMode"])),
        ]
    },
};

fn or_unset(v: &str) -> String {
    if v.is_empty() {
        "<unset>".into()
    } else {
        v.into()
    }
}

pub static PERSISTENTVOLUMECLAIMS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Status",
            "string",
            "phase represents the current phase of PersistentVolumeClaim.",
            0,
        ),
        col(
            "Volume",
            "string",
            "volumeName is the binding reference to the PersistentVolume backing this claim.",
            0,
        ),
        col(
            "Capacity",
            "string",
            "capacity represents the actual resources of the underlying volume.",
            0,
        ),
        col(
            "Access Modes",
            "string",
            "accessModes contains the actual access modes the volume backing the PVC has.",
            0,
        ),
        col(
            "StorageClass",
            "string",
            "storageClassName is the name of the StorageClass required by the claim.",
            0,
        ),
        col(
            "VolumeAttributesClass",
            "string",
            "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim.",
            0,
        ),
        AGE,
        col(
            "VolumeMode",
            "string",
            "volumeMode defines what type of volume is required by the claim.",
            1,
        ),
    ],
    cells: |o, now| {
        let bound = s(&o["status"]["phase"]) == "Bound";
        let capacity = if bound {
            s(&o["status"]["capacity"]["storage"])
        } else {
            ""
        };
        let modes = if bound {
            access_modes(&o["status"]["accessModes"])
        } else {
            String::new()
        };
        vec![
            name(o),
            json!(s(&o["status"]["phase"])),
            json!(s(&o["spec"]["volumeName"])),
            json!(capacity),
            json!(modes),
            json!(s(&o["spec"]["storageClassName"])),
            json!(or_unset(s(&o["spec"]["volumeAttributesClassName"]))),
            age(o, now),
            json!(s(&o["spec"]["volumeMode"])),
        ]
    },
};

pub static STORAGECLASSES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Provisioner",
            "string",
            "provisioner indicates the type of the provisioner.",
            0,
        ),
        col(
            "ReclaimPolicy",
            "string",
            "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class.",
            0,
        ),
        col(
            "VolumeBindingMode",
            "string",
            "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
            0,
        ),
        col(
            "AllowVolumeExpansion",
            "string",
            "allowVolumeExpansion shows whether the storage class allow volume expand.",
            0,
        ),
        AGE,
    ],
    cells: |o, now| {
        let mut n = s(&o["metadata"]["name"]).to_owned();
        let annotations = &o["metadata"]["annotations"];
        if s(&annotations["storageclass.kubernetes.io/is-default-class"]) == "true" {
            n.push_str(" (default)");
        }
        vec![
            json!(n),
            o["provisioner"].clone(),
            json!(s(&o["reclaimPolicy"])),
            json!(s(&o["volumeBindingMode"])),
            json!(
                o["allowVolumeExpansion"]
                    .as_bool()
                    .unwrap_or(false)
                    .to_string()
            ),
            age(o, now),
        ]
    },
};

pub static CSIDRIVERS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "AttachRequired",
            "boolean",
            "Indicates this CSI volume driver requires an attach operation.",
            0,
        ),
        AGE,
    ],
    cells: |o, now| {
        vec![
            name(o),
            json!(o["spec"]["attachRequired"].as_bool().unwrap_or(true)),
            age(o, now),
        ]
    },
};

pub static VOLUMEATTACHMENTS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Attacher",
            "string",
            "Attacher indicates the name of the volume driver that MUST handle this request.",
            0,
        ),
        col(
            "PV",
            "string",
            "Name of the persistent volume to attach.",
            0,
        ),
        col(
            "Node",
            "string",
            "The node that the volume should be attached to.",
            0,
        ),
        col(
            "Attached",
            "boolean",
            "Indicates the volume is successfully attached.",
            0,
        ),
        AGE,
    ],
    cells: |o, now| {
        vec![
            name(o),
            o["spec"]["attacher"].clone(),
            json!(or_none(s(&o["spec"]["source"]["persistentVolumeName"]))),
            o["spec"]["nodeName"].clone(),
            json!(o["status"]["attached"].as_bool().unwrap_or(false)),
            age(o, now),
        ]
    },
};
