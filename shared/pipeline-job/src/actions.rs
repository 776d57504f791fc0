//! crossdeploy's custom action types (owner Custom, category Deploy, version 1), as CodePipeline
//! knows them. `template.yaml` declares the same; a test keeps the two in step.

use crate::Kind;

/// Provider name of the Lambda action.
pub const LAMBDA_PROVIDER: &str = "CrossdeployLambda";
/// Provider name of the ECS action.
pub const ECS_PROVIDER: &str = "CrossdeployEcs";
/// The version of both action types.
pub const ACTION_VERSION: &str = "1";
/// Every crossdeploy provider.
pub const PROVIDERS: [&str; 2] = [LAMBDA_PROVIDER, ECS_PROVIDER];

/// The kind of deployment a provider stands for.
pub fn kind_of(provider: &str) -> Option<Kind> {
    match provider {
        LAMBDA_PROVIDER => Some(Kind::Lambda),
        ECS_PROVIDER => Some(Kind::Ecs),
        _ => None,
    }
}

/// One configuration property of an action type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Property {
    pub name: &'static str,
    pub required: bool,
    pub description: &'static str,
    /// `String` or `Number`.
    pub kind: &'static str,
}

const fn p(name: &'static str, required: bool, description: &'static str) -> Property {
    Property { name, required, description, kind: "String" }
}

/// The configuration properties of a provider, as the contract gives them. None is secret (no
/// secret goes into an action's configuration) and none is queryable.
pub fn properties(provider: &str) -> &'static [Property] {
    const LAMBDA: &[Property] = &[
        p("TargetRoleArn", true, "Role to assume in the target account"),
        p("FunctionName", true, "Function to update"),
        p("Alias", true, "Alias to move, e.g. live"),
        p(
            "ArtifactPath",
            false,
            "The package's path inside the input artifact zip; empty: the artifact itself is the package",
        ),
        p(
            "ImageFile",
            false,
            "Container-image functions: the file in the artifact naming the image (imageDetail.json of an ECR source action)",
        ),
        p(
            "DeploymentStrategy",
            false,
            "AllAtOnce (default), Canary<N>Percent<M>Minutes or Linear<N>PercentEvery<M>Minute(s)",
        ),
        p("AlarmNames", false, "Comma-separated alarms in the target account that gate the deployment"),
        p("Region", false, "Target region; default the pipeline's"),
    ];
    const ECS: &[Property] = &[
        p("TargetRoleArn", true, "Role to assume in the target account"),
        p("ClusterName", true, "Cluster of the service"),
        p("ServiceName", true, "Service to update"),
        p("FileName", false, "imagedefinitions.json (default) or an imageDetail.json"),
        p("ContainerName", false, "Container whose image changes; required with imageDetail.json"),
        Property {
            name: "TimeoutMinutes",
            required: false,
            description: "How long to follow the rollout (default 30)",
            kind: "Number",
        },
        p("AlarmNames", false, "Comma-separated alarms in the target account that gate the deployment"),
        p("Region", false, "Target region; default the pipeline's"),
        p(
            "DeploymentStrategy",
            false,
            "Rolling, BlueGreen, Canary<N>Percent<M>Minutes or Linear<N>PercentEvery<M>Minute(s); empty keeps the service's own",
        ),
        Property {
            name: "BakeTimeMinutes",
            required: false,
            description: "Blue/green, canary, linear - minutes both revisions run after all traffic moved; empty keeps the service's own",
            kind: "Number",
        },
    ];
    match provider {
        LAMBDA_PROVIDER => LAMBDA,
        ECS_PROVIDER => ECS,
        _ => &[],
    }
}
