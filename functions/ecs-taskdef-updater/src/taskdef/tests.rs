#![allow(deprecated)] // inference accelerators: still modelled, so still carried

use super::*;
use aws_sdk_ecs::config::{BehaviorVersion, Region};
use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput;
use aws_sdk_ecs::types::*;
use std::collections::BTreeMap;

/// The top-level fields of a derived `Debug` (`Name { a: .., b: .. }`), name -> value text.
/// The field lists below come from the SDK's own types this way, not from a list kept here.
pub(crate) fn debug_fields(text: &str) -> BTreeMap<String, String> {
    let inner =
        text.split_once('{').and_then(|(_, rest)| rest.rsplit_once('}')).map(|(inner, _)| inner).unwrap_or_default();
    let mut fields = BTreeMap::new();
    let (mut depth, mut in_string, mut escaped, mut start) = (0i32, false, false, 0usize);
    let bytes = inner.as_bytes();
    let mut push = |part: &str| {
        if let Some((k, v)) = part.split_once(':') {
            fields.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    };
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' | b'(' => depth += 1,
            b'}' | b']' | b')' => depth -= 1,
            b',' if depth == 0 => {
                push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    push(&inner[start..]);
    fields
}

/// A task definition that sets every field the SDK models, nested ones generously.
pub(crate) fn full_task_definition() -> TaskDefinition {
    let web = ContainerDefinition::builder()
        .name("web")
        .image("111111111111.dkr.ecr.us-east-1.amazonaws.com/web:old")
        .repository_credentials(
            RepositoryCredentials::builder()
                .credentials_parameter("arn:aws:secretsmanager:us-east-1:222222222222:secret:registry")
                .build()
                .unwrap(),
        )
        .cpu(256)
        .memory(512)
        .memory_reservation(256)
        .port_mappings(
            PortMapping::builder()
                .container_port(8080)
                .protocol(TransportProtocol::Tcp)
                .name("http")
                .app_protocol(ApplicationProtocol::Http2)
                .build(),
        )
        .essential(true)
        .restart_policy(
            ContainerRestartPolicy::builder()
                .enabled(true)
                .ignored_exit_codes(0)
                .restart_attempt_period(60)
                .build()
                .unwrap(),
        )
        .entry_point("/bin/web")
        .command("--port=8080")
        .environment(KeyValuePair::builder().name("MODE").value("prod").build())
        .environment_files(
            EnvironmentFile::builder()
                .value("arn:aws:s3:::config/web.env")
                .r#type(EnvironmentFileType::S3)
                .build()
                .unwrap(),
        )
        .mount_points(MountPoint::builder().source_volume("shared").container_path("/data").read_only(false).build())
        .linux_parameters(
            LinuxParameters::builder()
                .capabilities(KernelCapabilities::builder().add("SYS_PTRACE").drop("NET_RAW").build())
                .init_process_enabled(true)
                .shared_memory_size(64)
                .tmpfs(Tmpfs::builder().container_path("/tmp").size(64).mount_options("noexec").build().unwrap())
                .build(),
        )
        .secrets(
            Secret::builder()
                .name("DB_PASSWORD")
                .value_from("arn:aws:ssm:us-east-1:222222222222:parameter/db")
                .build()
                .unwrap(),
        )
        .depends_on(
            ContainerDependency::builder()
                .container_name("log_router")
                .condition(ContainerCondition::Start)
                .build()
                .unwrap(),
        )
        .start_timeout(30)
        .stop_timeout(30)
        .version_consistency(VersionConsistency::Enabled)
        .user("1000")
        .working_directory("/app")
        .readonly_root_filesystem(true)
        .ulimits(Ulimit::builder().name(UlimitName::Nofile).soft_limit(4096).hard_limit(8192).build().unwrap())
        .log_configuration(
            LogConfiguration::builder()
                .log_driver(LogDriver::Awsfirelens)
                .options("Name", "cloudwatch")
                .secret_options(
                    Secret::builder()
                        .name("apikey")
                        .value_from("arn:aws:ssm:us-east-1:222222222222:parameter/key")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .health_check(
            HealthCheck::builder()
                .command("CMD-SHELL")
                .command("curl -f http://localhost:8080/health")
                .interval(30)
                .timeout(5)
                .retries(3)
                .start_period(10)
                .build()
                .unwrap(),
        )
        .docker_labels("team", "orders")
        .build();
    let log_router = ContainerDefinition::builder()
        .name("log_router")
        .image("public.ecr.aws/aws-observability/aws-for-fluent-bit:stable")
        .essential(true)
        .firelens_configuration(
            FirelensConfiguration::builder()
                .r#type(FirelensConfigurationType::Fluentbit)
                .options("enable-ecs-log-metadata", "true")
                .build()
                .unwrap(),
        )
        .build();
    let envoy = ContainerDefinition::builder()
        .name("envoy")
        .image("public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29")
        .essential(true)
        .build();
    TaskDefinition::builder()
        .task_definition_arn("arn:aws:ecs:us-east-1:222222222222:task-definition/web:7")
        .container_definitions(web)
        .container_definitions(log_router)
        .container_definitions(envoy)
        .family("web")
        .task_role_arn("arn:aws:iam::222222222222:role/web-task")
        .execution_role_arn("arn:aws:iam::222222222222:role/web-execution")
        .network_mode(NetworkMode::Awsvpc)
        .revision(7)
        .volumes(
            Volume::builder()
                .name("shared")
                .efs_volume_configuration(
                    EfsVolumeConfiguration::builder()
                        .file_system_id("fs-12345678")
                        .root_directory("/")
                        .transit_encryption(EfsTransitEncryption::Enabled)
                        .transit_encryption_port(2049)
                        .authorization_config(
                            EfsAuthorizationConfig::builder()
                                .access_point_id("fsap-1234")
                                .iam(EfsAuthorizationConfigIam::Enabled)
                                .build(),
                        )
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .status(TaskDefinitionStatus::Active)
        .requires_attributes(
            Attribute::builder().name("com.amazonaws.ecs.capability.docker-remote-api.1.21").build().unwrap(),
        )
        .placement_constraints(
            TaskDefinitionPlacementConstraint::builder()
                .r#type(TaskDefinitionPlacementConstraintType::MemberOf)
                .expression("attribute:ecs.os-type == linux")
                .build(),
        )
        .compatibilities(Compatibility::Fargate)
        .runtime_platform(
            RuntimePlatform::builder()
                .cpu_architecture(CpuArchitecture::Arm64)
                .operating_system_family(OsFamily::Linux)
                .build(),
        )
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("512")
        .memory("1024")
        .inference_accelerators(
            InferenceAccelerator::builder().device_name("device1").device_type("eia2.medium").build().unwrap(),
        )
        .pid_mode(PidMode::Task)
        .ipc_mode(IpcMode::Task)
        .proxy_configuration(
            ProxyConfiguration::builder()
                .r#type(ProxyConfigurationType::Appmesh)
                .container_name("envoy")
                .properties(KeyValuePair::builder().name("AppPorts").value("8080").build())
                .build()
                .unwrap(),
        )
        .registered_at(aws_smithy_types::DateTime::from_secs(1_760_000_000))
        .deregistered_at(aws_smithy_types::DateTime::from_secs(1_760_000_100))
        .delete_requested_at(aws_smithy_types::DateTime::from_secs(1_760_000_200))
        .registered_by("arn:aws:iam::222222222222:role/admin")
        .ephemeral_storage(EphemeralStorage::builder().size_in_gib(40).build())
        .enable_fault_injection(true)
        .build()
}

fn client() -> aws_sdk_ecs::Client {
    aws_sdk_ecs::Client::from_conf(
        aws_sdk_ecs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .build(),
    )
}

fn registered(td: &TaskDefinition, tags: &[Tag], changes: &[ImageChange]) -> RegisterTaskDefinitionInput {
    let containers = replace_images(td.container_definitions(), changes).unwrap();
    clone_into(client().register_task_definition(), td, tags, containers, "arn:previous", "job-1")
        .as_input()
        .clone()
        .build()
        .unwrap()
}

#[test]
fn the_fixture_sets_every_field_the_sdk_models() {
    let fields = debug_fields(&format!("{:?}", full_task_definition()));
    assert!(fields.len() >= 26, "{fields:?}");
    let unset: Vec<&String> = fields.iter().filter(|(_, v)| v.as_str() == "None").map(|(k, _)| k).collect();
    assert!(
        unset.is_empty(),
        "the SDK models fields the fixture does not set: {unset:?}; set them so the clone test covers them"
    );
}

#[test]
fn every_field_is_either_read_only_or_carried_to_register() {
    let described = debug_fields(&format!("{:?}", TaskDefinition::builder().build()));
    let register = debug_fields(&format!("{:?}", RegisterTaskDefinitionInput::builder().build().unwrap()));
    for field in described.keys() {
        assert!(
            READ_ONLY_FIELDS.contains(&field.as_str()) || register.contains_key(field),
            "TaskDefinition.{field} is neither read-only nor taken by RegisterTaskDefinition: decide which"
        );
    }
    for field in register.keys().filter(|f| *f != "tags") {
        assert!(
            described.contains_key(field),
            "RegisterTaskDefinition takes {field}, which DescribeTaskDefinition does not return"
        );
    }
}

#[test]
fn the_registered_revision_equals_the_described_one_but_for_the_images() {
    let td = full_task_definition();
    let tags = vec![
        Tag::builder().key("team").value("orders").build(),
        Tag::builder().key(PREVIOUS_TAG).value("arn:older").build(),
    ];
    let changes = vec![ImageChange {
        container: "web".into(),
        image: "111111111111.dkr.ecr.us-east-1.amazonaws.com/web:new".into(),
    }];

    let input = registered(&td, &tags, &changes);

    let mut expected = debug_fields(&format!("{td:?}"));
    for f in READ_ONLY_FIELDS {
        expected.remove(*f);
    }
    let mut containers = td.container_definitions().to_vec();
    containers[0].image = Some("111111111111.dkr.ecr.us-east-1.amazonaws.com/web:new".into());
    expected.insert("container_definitions".into(), format!("{:?}", Some(containers)));
    let mut got = debug_fields(&format!("{input:?}"));
    let got_tags = got.remove("tags");
    assert_eq!(got, expected);
    let want_tags = vec![
        Tag::builder().key("team").value("orders").build(),
        Tag::builder().key(PREVIOUS_TAG).value("arn:previous").build(),
        Tag::builder().key(DEPLOYMENT_TAG).value("job-1").build(),
    ];
    assert_eq!(
        got_tags,
        Some(format!("{:?}", Some(want_tags))),
        "tags carried; the crossdeploy tags name the replaced revision and the deployment"
    );
}

#[test]
fn containers_not_named_keep_their_image_and_unknown_ones_are_refused() {
    let td = full_task_definition();
    let changes = vec![ImageChange { container: "envoy".into(), image: "envoy:2".into() }];
    let out = replace_images(td.container_definitions(), &changes).unwrap();
    assert_eq!(out[0], td.container_definitions()[0]);
    assert_eq!(out[1], td.container_definitions()[1]);
    assert_eq!(out[2].image(), Some("envoy:2"));
    let e = replace_images(td.container_definitions(), &[ImageChange { container: "api".into(), image: "x".into() }])
        .unwrap_err();
    assert!(e.contains("`api`") && e.contains("web, log_router, envoy"), "{e}");
}

#[test]
fn runs_images_tells_whether_anything_changes() {
    let td = full_task_definition();
    let same = vec![ImageChange {
        container: "web".into(),
        image: "111111111111.dkr.ecr.us-east-1.amazonaws.com/web:old".into(),
    }];
    assert!(runs_images(td.container_definitions(), &same));
    let new = vec![ImageChange { container: "web".into(), image: "web:new".into() }];
    assert!(!runs_images(td.container_definitions(), &new));
}

#[test]
fn debug_fields_splits_only_at_the_top_level() {
    let f = debug_fields(r#"X { a: Some("x, y"), b: Some([A { c: 1, d: 2 }]), e: None }"#);
    assert_eq!(f["a"], r#"Some("x, y")"#);
    assert_eq!(f["b"], "Some([A { c: 1, d: 2 }])");
    assert_eq!(f["e"], "None");
}
