//! Kubernetes pod specs wherever they hide: workloads, CronJobs, actions-runner-controller
//! resources and Helm values, and pod YAML embedded in Jenkinsfiles. The `k8s-*` rules read these.

use crate::yaml::Node;

/// One pod spec with what a finding needs to say where and whose it is.
pub struct PodSpec<'a> {
    /// The spec mapping itself (`containers`, `volumes`, `securityContext`, ...).
    pub spec: &'a Node<'a>,
    /// Where a pod-level "missing" finding points: the `spec:` key.
    pub anchor: &'a Node<'a>,
    /// The pod template's metadata (annotations), when there is one.
    pub metadata: Option<&'a Node<'a>>,
    /// `Deployment/web`, `values template.spec`, ...
    pub owner: String,
    /// A kustomize patch (a workload without `spec.selector`): only what it sets is known, so
    /// rules about missing settings stay silent on it.
    pub partial: bool,
}

/// A container of a pod spec, with its name for messages.
pub struct Container<'a> {
    pub node: &'a Node<'a>,
    pub name: String,
}

const ARC_KINDS: &[&str] = &[
    "RunnerDeployment",
    "RunnerReplicaSet",
    "RunnerSet",
    "Runner",
    "HorizontalRunnerAutoscaler",
    "AutoscalingRunnerSet",
    "EphemeralRunner",
    "EphemeralRunnerSet",
];

pub fn is_arc_kind(kind: &str) -> bool {
    ARC_KINDS.contains(&kind)
}

/// `apiVersion` + `kind`: a Kubernetes object.
pub fn is_k8s_object(doc: &Node<'_>) -> bool {
    doc.get("apiVersion").and_then(Node::as_str).is_some() && doc.get("kind").and_then(Node::as_str).is_some()
}

/// Keys of a gha-runner-scale-set (or legacy controller) Helm values file that name it as one.
pub fn is_arc_values(doc: &Node<'_>) -> bool {
    doc.get("githubConfigUrl").is_some()
        || doc.get("githubConfigSecret").is_some()
        || doc.path(&["containerMode", "type"]).is_some()
        || (doc.path(&["template", "spec"]).is_some()
            && (doc.get("maxRunners").is_some()
                || doc.get("minRunners").is_some()
                || doc.get("runnerScaleSetName").is_some()))
}

fn entry_path<'a>(root: &'a Node<'a>, keys: &[&str]) -> Option<(&'a Node<'a>, &'a Node<'a>)> {
    let (last, init) = keys.split_last()?;
    let parent = root.path(init)?;
    parent.entry(last)
}

/// Pod specs inside one Kubernetes object.
pub fn pod_specs_of_object<'a>(doc: &'a Node<'a>) -> Vec<PodSpec<'a>> {
    let kind = doc.get("kind").and_then(Node::as_str).unwrap_or("");
    let name = doc.path(&["metadata", "name"]).and_then(Node::as_str).unwrap_or("");
    let owner = if name.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}/{name}")
    };
    let path: &[&[&str]] = match kind {
        "Pod" => &[&["spec"]],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController"
        | "RunnerSet"
        | "AutoscalingRunnerSet" => &[&["spec", "template", "spec"]],
        "PodTemplate" => &[&["template", "spec"]],
        "CronJob" => &[&["spec", "jobTemplate", "spec", "template", "spec"]],
        // summerwind's CRDs put the runner's pod fields straight in the runner spec.
        "RunnerDeployment" | "RunnerReplicaSet" => &[&["spec", "template", "spec"]],
        "Runner" => &[&["spec"]],
        "EphemeralRunner" => &[&["spec", "spec"]],
        "EphemeralRunnerSet" => &[&["spec", "ephemeralRunnerSpec", "spec"]],
        _ => &[],
    };
    let partial = matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        && doc.path(&["spec", "selector"]).is_none();
    let mut out = Vec::new();
    for p in path {
        if let Some((k, v)) = entry_path(doc, p) {
            if v.as_map().is_none() {
                continue;
            }
            let meta_path: Vec<&str> = p[..p.len() - 1].iter().copied().chain(["metadata"]).collect();
            out.push(PodSpec {
                spec: v,
                anchor: k,
                metadata: doc.path(&meta_path),
                owner: owner.clone(),
                partial,
            });
        }
    }
    out
}

/// The runner pod template of gha-runner-scale-set Helm values (`template.spec`).
pub fn pod_specs_of_values<'a>(doc: &'a Node<'a>) -> Vec<PodSpec<'a>> {
    entry_path(doc, &["template", "spec"])
        .filter(|(_, v)| v.as_map().is_some())
        .map(|(k, v)| PodSpec {
            spec: v,
            anchor: k,
            metadata: doc.path(&["template", "metadata"]),
            owner: "values template.spec".to_string(),
            partial: false,
        })
        .into_iter()
        .collect()
}

/// A bare pod manifest (Jenkins' inline pod YAML may omit apiVersion).
pub fn pod_specs_of_inline<'a>(doc: &'a Node<'a>) -> Vec<PodSpec<'a>> {
    if is_k8s_object(doc) {
        return pod_specs_of_object(doc);
    }
    entry_path(doc, &["spec"])
        .filter(|(_, v)| v.get("containers").is_some())
        .map(|(k, v)| PodSpec {
            spec: v,
            anchor: k,
            metadata: doc.get("metadata"),
            owner: "pod".to_string(),
            partial: false,
        })
        .into_iter()
        .collect()
}

impl<'a> PodSpec<'a> {
    pub fn containers(&self) -> Vec<Container<'a>> {
        let mut out = Vec::new();
        for key in ["initContainers", "containers", "ephemeralContainers"] {
            for c in self.spec.get(key).map(|n| n.items()).into_iter().flatten() {
                if c.as_map().is_none() {
                    continue;
                }
                let name = c.get("name").and_then(Node::as_str).unwrap_or("?").to_string();
                out.push(Container { node: c, name });
            }
        }
        out
    }

    /// The pod-level securityContext, if any.
    pub fn pod_security(&self) -> Option<&'a Node<'a>> {
        self.spec.get("securityContext")
    }

    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.metadata?.get("annotations")?.get(key)?.as_str()
    }
}

impl<'a> Container<'a> {
    pub fn security(&self) -> Option<&'a Node<'a>> {
        self.node.get("securityContext")
    }

    /// `securityContext.<key>` as an entry (key node, value node).
    pub fn security_entry(&self, key: &str) -> Option<(&'a Node<'a>, &'a Node<'a>)> {
        self.security()?.entry(key)
    }

    /// Where a "missing" finding for this container points: its `name` value, else its start.
    pub fn anchor(&self) -> &'a Node<'a> {
        self.node.entry("name").map(|(k, _)| k).unwrap_or(self.node)
    }

    pub fn image(&self) -> &'a str {
        self.node.get("image").and_then(Node::as_str).unwrap_or("")
    }
}
