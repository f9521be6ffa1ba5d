//! The objects that declare variants: a VariantAutoscaling, or an HPA or ScaledObject carrying
//! our annotations. A variant's status (a VA's only) and its Events go to its owner; the scope
//! says which owners this controller instance manages.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::scalers::ScalerKind;
use crate::crd::CONTROLLER_INSTANCE_LABEL;

/// Which VAs this controller manages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// `CONTROLLER_INSTANCE`: only VAs labelled with it; without it, only unlabelled VAs.
    pub instance: Option<String>,
    /// `WATCH_NAMESPACE`: only this namespace.
    pub namespace: Option<String>,
}

impl Scope {
    pub fn manages(&self, meta: &ObjectMeta) -> bool {
        let label = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(CONTROLLER_INSTANCE_LABEL))
            .filter(|v| !v.is_empty());
        let in_namespace = match (&self.namespace, &meta.namespace) {
            (Some(watched), Some(ns)) => watched == ns,
            (Some(_), None) => false,
            (None, _) => true,
        };
        in_namespace && label == self.instance.as_ref()
    }
}

/// The kind of object that declares a variant: its Events go there, and a VA also gets a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OwnerKind {
    VariantAutoscaling,
    HorizontalPodAutoscaler,
    ScaledObject,
}

impl OwnerKind {
    pub fn api_version(self) -> &'static str {
        match self {
            Self::VariantAutoscaling => "llmd.ai/v1alpha1",
            Self::HorizontalPodAutoscaler => "autoscaling/v2",
            Self::ScaledObject => "keda.sh/v1alpha1",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::VariantAutoscaling => "VariantAutoscaling",
            Self::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            Self::ScaledObject => "ScaledObject",
        }
    }
}

impl From<ScalerKind> for OwnerKind {
    fn from(kind: ScalerKind) -> Self {
        match kind {
            ScalerKind::Hpa => Self::HorizontalPodAutoscaler,
            ScalerKind::ScaledObject => Self::ScaledObject,
        }
    }
}

/// The object a variant's status and Events belong to: a VA, or an annotated scaler (which has
/// no status of ours, only Events).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerRef {
    pub kind: OwnerKind,
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub generation: Option<i64>,
}

/// An owner's identity: kind, namespace, name.
pub type OwnerId = (OwnerKind, String, String);

impl OwnerRef {
    pub fn of(kind: OwnerKind, meta: &ObjectMeta) -> Self {
        Self {
            kind,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone(),
            generation: meta.generation,
        }
    }

    pub fn id(&self) -> OwnerId {
        (self.kind, self.namespace.clone(), self.name.clone())
    }

    /// Only a VA has a status the controller writes.
    pub fn has_status(&self) -> bool {
        self.kind == OwnerKind::VariantAutoscaling
    }

    /// The reference an Event is about.
    pub fn object_reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.kind.api_version().into()),
            kind: Some(self.kind.name().into()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: self.uid.clone(),
            ..Default::default()
        }
    }
}

impl std::fmt::Display for OwnerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.name(), self.namespace, self.name)
    }
}
