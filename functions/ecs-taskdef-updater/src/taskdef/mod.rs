//! The new task-definition revision: the service's current one with new images, dropping nothing.
//!
//! Every top-level field of the described task definition but the read-only ones is carried to
//! `RegisterTaskDefinition`; nested values (containers, volumes...) are the same SDK types on
//! both sides and pass whole, so their fields are never filtered. The Rust SDK has no
//! reflection, so the top-level fields are set one by one; `tests` derives the field lists from
//! the SDK's own types and fails the day the SDK models a field this clone does not carry.

use crate::images::ImageChange;
use aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder;
use aws_sdk_ecs::types::{ContainerDefinition, Tag, TaskDefinition};

/// Tag recording, on a revision crossdeploy registered, the revision it replaced.
pub const PREVIOUS_TAG: &str = "crossdeploy:previous-task-definition";
/// Tag recording, on a revision crossdeploy registered, the deployment that registered it.
pub const DEPLOYMENT_TAG: &str = "crossdeploy:deployment";

/// Fields `DescribeTaskDefinition` returns that `RegisterTaskDefinition` does not take.
pub const READ_ONLY_FIELDS: &[&str] = &[
    "task_definition_arn",
    "revision",
    "status",
    "requires_attributes",
    "compatibilities",
    "registered_at",
    "registered_by",
    "deregistered_at",
    "delete_requested_at",
];

/// The containers with the changes applied. Errors name the unknown container and list the real ones.
pub fn replace_images(
    containers: &[ContainerDefinition],
    changes: &[ImageChange],
) -> Result<Vec<ContainerDefinition>, String> {
    let names: Vec<&str> = containers.iter().filter_map(|c| c.name()).collect();
    for change in changes {
        if !names.contains(&change.container.as_str()) {
            return Err(format!(
                "container `{}` is not in the service's task definition; its containers are: {}",
                change.container,
                names.join(", ")
            ));
        }
    }
    Ok(containers
        .iter()
        .map(|c| match changes.iter().find(|ch| Some(ch.container.as_str()) == c.name()) {
            Some(ch) => {
                let mut c = c.clone();
                c.image = Some(ch.image.clone());
                c
            }
            None => c.clone(),
        })
        .collect())
}

/// Whether the containers already run exactly these images.
pub fn runs_images(containers: &[ContainerDefinition], changes: &[ImageChange]) -> bool {
    changes.iter().all(|ch| {
        containers.iter().any(|c| c.name() == Some(ch.container.as_str()) && c.image() == Some(ch.image.as_str()))
    })
}

/// Fills `register` with `current` (its tags too), the containers replaced by `containers`, and
/// the crossdeploy tags naming `previous_arn` and `deployment`.
// Inference accelerators are deprecated by AWS but still modelled: carry what the task definition has.
#[allow(deprecated)]
pub fn clone_into(
    register: RegisterTaskDefinitionFluentBuilder,
    current: &TaskDefinition,
    tags: &[Tag],
    containers: Vec<ContainerDefinition>,
    previous_arn: &str,
    deployment: &str,
) -> RegisterTaskDefinitionFluentBuilder {
    let mut tags: Vec<Tag> =
        tags.iter().filter(|t| t.key() != Some(PREVIOUS_TAG) && t.key() != Some(DEPLOYMENT_TAG)).cloned().collect();
    tags.push(Tag::builder().key(PREVIOUS_TAG).value(previous_arn).build());
    tags.push(Tag::builder().key(DEPLOYMENT_TAG).value(deployment).build());
    let td = current.clone();
    register
        .set_family(td.family)
        .set_task_role_arn(td.task_role_arn)
        .set_execution_role_arn(td.execution_role_arn)
        .set_network_mode(td.network_mode)
        .set_container_definitions(Some(containers))
        .set_volumes(td.volumes)
        .set_placement_constraints(td.placement_constraints)
        .set_requires_compatibilities(td.requires_compatibilities)
        .set_cpu(td.cpu)
        .set_memory(td.memory)
        .set_tags(Some(tags))
        .set_pid_mode(td.pid_mode)
        .set_ipc_mode(td.ipc_mode)
        .set_proxy_configuration(td.proxy_configuration)
        .set_inference_accelerators(td.inference_accelerators)
        .set_ephemeral_storage(td.ephemeral_storage)
        .set_runtime_platform(td.runtime_platform)
        .set_enable_fault_injection(td.enable_fault_injection)
}

#[cfg(test)]
mod tests;
