//! An ECS service in a target account of the local AWS: a Fargate service with its own VPC,
//! subnet and security group, running a task definition that sets many fields.

use crate::{venv_bin, Result};
use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_ecs::types::*;
use std::process::Command;

pub const CLUSTER: &str = "prod";
pub const SERVICE: &str = "web";
pub const OLD_IMAGE: &str = "111111111111.dkr.ecr.us-east-1.amazonaws.com/web:old";

/// Runs the AWS CLI (from the venv) against the local AWS as `account`; returns its output (text
/// unless `args` choose `--output`).
/// EC2 networking is made this way so the harness needs no EC2 SDK crate.
pub async fn aws_cli(endpoint: &str, account: &SdkConfig, args: &[&str]) -> Result<String> {
    let creds = account.credentials_provider().ok_or("no credentials")?.provide_credentials().await?;
    let out = Command::new(venv_bin("aws")?)
        .args(args)
        .args(if args.contains(&"--output") { &[][..] } else { &["--output", "text"][..] })
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_DEFAULT_REGION", crate::accounts::REGION)
        .env("AWS_ACCESS_KEY_ID", creds.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", creds.secret_access_key())
        .env("AWS_SESSION_TOKEN", creds.session_token().unwrap_or_default())
        .output()?;
    if !out.status.success() {
        return Err(format!("aws {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The cluster `prod` with the Fargate service `web` (desired count 1) on its first revision;
/// returns that revision's ARN.
pub async fn create_fargate_service(endpoint: &str, target: &SdkConfig) -> Result<String> {
    create_fargate_service_with(endpoint, target, &Fargate::default()).await
}

/// How [`create_fargate_service_with`] makes the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fargate {
    pub desired: i32,
    /// ECS's deployment circuit breaker, with rollback.
    pub circuit_breaker: bool,
    /// An Application Load Balancer in front of it (listener, rule, blue and green target groups).
    pub load_balancer: Option<LoadBalancing>,
}

impl Default for Fargate {
    fn default() -> Self {
        Fargate { desired: 1, circuit_breaker: false, load_balancer: None }
    }
}

/// How the service's load balancer is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadBalancing {
    /// With advancedConfiguration (alternate target group, production listener rule, role):
    /// ready for blue/green, canary and linear deployments.
    BlueGreenReady,
    /// The blue target group only, as a service that has only ever deployed rolling.
    TargetGroupOnly,
}

/// An ALB with a listener, a production rule and two target groups (blue, green) in `vpc`;
/// returns (blue, green, rule).
async fn create_load_balancer(
    endpoint: &str,
    target: &SdkConfig,
    vpc: &str,
    subnets: [&str; 2],
    sg: &str,
) -> Result<(String, String, String)> {
    let cli = |args: Vec<&str>| {
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            aws_cli(endpoint, target, &refs).await
        }
    };
    let lb = cli(vec![
        "elbv2",
        "create-load-balancer",
        "--name",
        "web",
        "--type",
        "application",
        "--subnets",
        subnets[0],
        subnets[1],
        "--security-groups",
        sg,
        "--query",
        "LoadBalancers[0].LoadBalancerArn",
    ])
    .await?;
    let group = |name: &'static str| {
        cli(vec![
            "elbv2",
            "create-target-group",
            "--name",
            name,
            "--protocol",
            "HTTP",
            "--port",
            "8080",
            "--vpc-id",
            vpc,
            "--target-type",
            "ip",
            "--query",
            "TargetGroups[0].TargetGroupArn",
        ])
    };
    let blue = group("web-blue").await?;
    let green = group("web-green").await?;
    let forward = format!("Type=forward,TargetGroupArn={blue}");
    let listener = cli(vec![
        "elbv2",
        "create-listener",
        "--load-balancer-arn",
        &lb,
        "--protocol",
        "HTTP",
        "--port",
        "80",
        "--default-actions",
        &forward,
        "--query",
        "Listeners[0].ListenerArn",
    ])
    .await?;
    let rule = cli(vec![
        "elbv2",
        "create-rule",
        "--listener-arn",
        &listener,
        "--priority",
        "10",
        "--conditions",
        "Field=path-pattern,Values=/*",
        "--actions",
        &forward,
        "--query",
        "Rules[0].RuleArn",
    ])
    .await?;
    Ok((blue, green, rule))
}

/// The cluster `prod` with the Fargate service `web` made as `how` says, on its first revision;
/// returns that revision's ARN.
pub async fn create_fargate_service_with(endpoint: &str, target: &SdkConfig, how: &Fargate) -> Result<String> {
    let vpc = aws_cli(endpoint, target, &["ec2", "create-vpc", "--cidr-block", "10.20.0.0/16", "--query", "Vpc.VpcId"])
        .await?;
    let subnet = aws_cli(
        endpoint,
        target,
        &["ec2", "create-subnet", "--vpc-id", &vpc, "--cidr-block", "10.20.1.0/24", "--query", "Subnet.SubnetId"],
    )
    .await?;
    let subnet_b = aws_cli(
        endpoint,
        target,
        &[
            "ec2",
            "create-subnet",
            "--vpc-id",
            &vpc,
            "--cidr-block",
            "10.20.2.0/24",
            "--availability-zone",
            "us-east-1b",
            "--query",
            "Subnet.SubnetId",
        ],
    )
    .await?;
    let sg = aws_cli(
        endpoint,
        target,
        &[
            "ec2",
            "create-security-group",
            "--vpc-id",
            &vpc,
            "--group-name",
            "web",
            "--description",
            "web tasks",
            "--query",
            "GroupId",
        ],
    )
    .await?;
    let ecs = aws_sdk_ecs::Client::new(target);
    ecs.create_cluster().cluster_name(CLUSTER).send().await?;
    let account = target_account(target).await?;
    let registered = ecs
        .register_task_definition()
        .family("web")
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("512")
        .memory("1024")
        .task_role_arn(format!("arn:aws:iam::{account}:role/web-task"))
        .execution_role_arn(format!("arn:aws:iam::{account}:role/web-execution"))
        .runtime_platform(
            RuntimePlatform::builder()
                .cpu_architecture(CpuArchitecture::Arm64)
                .operating_system_family(OsFamily::Linux)
                .build(),
        )
        .ephemeral_storage(EphemeralStorage::builder().size_in_gib(30).build())
        .volumes(Volume::builder().name("scratch").build())
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image(OLD_IMAGE)
                .essential(true)
                .port_mappings(
                    PortMapping::builder().container_port(8080).protocol(TransportProtocol::Tcp).name("http").build(),
                )
                .environment(KeyValuePair::builder().name("MODE").value("prod").build())
                .secrets(
                    Secret::builder()
                        .name("DB_PASSWORD")
                        .value_from(format!("arn:aws:ssm:us-east-1:{account}:parameter/db"))
                        .build()?,
                )
                .health_check(
                    HealthCheck::builder()
                        .command("CMD-SHELL")
                        .command("curl -f http://localhost:8080/health")
                        .interval(30)
                        .retries(3)
                        .build()?,
                )
                .log_configuration(
                    LogConfiguration::builder()
                        .log_driver(LogDriver::Awslogs)
                        .options("awslogs-group", "/ecs/web")
                        .build()?,
                )
                .mount_points(MountPoint::builder().source_volume("scratch").container_path("/scratch").build())
                .ulimits(Ulimit::builder().name(UlimitName::Nofile).soft_limit(4096).hard_limit(8192).build()?)
                .build(),
        )
        .container_definitions(
            ContainerDefinition::builder().name("sidecar").image("public.ecr.aws/envoy:v1.30").essential(false).build(),
        )
        .tags(Tag::builder().key("team").value("orders").build())
        .send()
        .await?;
    let arn = registered.task_definition.and_then(|t| t.task_definition_arn).ok_or("no task definition ARN")?;
    let load_balancers = match how.load_balancer {
        None => None,
        Some(kind) => {
            let (blue, green, rule) = create_load_balancer(endpoint, target, &vpc, [&subnet, &subnet_b], &sg).await?;
            let advanced = (kind == LoadBalancing::BlueGreenReady).then(|| {
                AdvancedConfiguration::builder()
                    .alternate_target_group_arn(green)
                    .production_listener_rule(rule)
                    .role_arn(format!("arn:aws:iam::{account}:role/web-ecs-infrastructure"))
                    .build()
            });
            Some(vec![LoadBalancer::builder()
                .target_group_arn(blue)
                .container_name("web")
                .container_port(8080)
                .set_advanced_configuration(advanced)
                .build()])
        }
    };
    let configuration = how.circuit_breaker.then(|| {
        DeploymentConfiguration::builder()
            .deployment_circuit_breaker(DeploymentCircuitBreaker::builder().enable(true).rollback(true).build())
            .build()
    });
    ecs.create_service()
        .cluster(CLUSTER)
        .service_name(SERVICE)
        .task_definition(&arn)
        .desired_count(how.desired)
        .set_load_balancers(load_balancers)
        .set_deployment_configuration(configuration)
        .launch_type(LaunchType::Fargate)
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(
                    AwsVpcConfiguration::builder()
                        .subnets(subnet)
                        .security_groups(sg)
                        .assign_public_ip(AssignPublicIp::Disabled)
                        .build()?,
                )
                .build(),
        )
        .send()
        .await?;
    Ok(arn)
}

async fn target_account(config: &SdkConfig) -> Result<String> {
    Ok(aws_sdk_sts::Client::new(config).get_caller_identity().send().await?.account.unwrap_or_default())
}

/// What the service runs, and the revisions of its family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    pub task_definition: String,
    pub revisions: Vec<String>,
}

pub async fn service_state(target: &SdkConfig) -> Result<ServiceState> {
    let ecs = aws_sdk_ecs::Client::new(target);
    let out = ecs.describe_services().cluster(CLUSTER).services(SERVICE).send().await?;
    let task_definition = out.services().first().and_then(|s| s.task_definition()).unwrap_or_default().to_owned();
    let revisions =
        ecs.list_task_definitions().family_prefix("web").send().await?.task_definition_arns.unwrap_or_default();
    Ok(ServiceState { task_definition, revisions })
}

/// The described task definition and its tags.
pub async fn task_definition(target: &SdkConfig, arn: &str) -> Result<(TaskDefinition, Vec<Tag>)> {
    let out = aws_sdk_ecs::Client::new(target)
        .describe_task_definition()
        .task_definition(arn)
        .include(TaskDefinitionField::Tags)
        .send()
        .await?;
    Ok((out.task_definition.ok_or("no task definition")?, out.tags.unwrap_or_default()))
}

/// A plain service for the soak: cluster `cluster` with service `service` (EC2 launch type,
/// bridge networking) running one container `web` on `OLD_IMAGE`, with `desired` tasks. Under
/// `tests/localaws/moto_server.py`, a rollout completes only when `desired` is at most
/// `MOTO_ECS_SERVICE_RUNNING` (1 unless set): a larger service's rollouts never complete.
/// Returns the first revision's ARN.
pub async fn create_plain_service(target: &SdkConfig, cluster: &str, service: &str, desired: i32) -> Result<String> {
    let ecs = aws_sdk_ecs::Client::new(target);
    ecs.create_cluster().cluster_name(cluster).send().await?;
    let registered = ecs
        .register_task_definition()
        .family(service)
        .network_mode(NetworkMode::Bridge)
        .container_definitions(
            ContainerDefinition::builder().name("web").image(OLD_IMAGE).memory(256).essential(true).build(),
        )
        .send()
        .await?;
    let arn = registered.task_definition.and_then(|t| t.task_definition_arn).ok_or("no task definition ARN")?;
    ecs.create_service()
        .cluster(cluster)
        .service_name(service)
        .task_definition(&arn)
        .desired_count(desired)
        .launch_type(LaunchType::Ec2)
        .send()
        .await?;
    Ok(arn)
}

/// The task definition a service runs.
pub async fn running_task_definition(target: &SdkConfig, cluster: &str, service: &str) -> Result<String> {
    let out = aws_sdk_ecs::Client::new(target).describe_services().cluster(cluster).services(service).send().await?;
    Ok(out.services().first().and_then(|s| s.task_definition()).unwrap_or_default().to_owned())
}

/// The service's service deployments, newest first, as DescribeServiceDeployments gives them.
pub async fn service_deployments(target: &SdkConfig, cluster: &str, service: &str) -> Result<Vec<ServiceDeployment>> {
    let ecs = aws_sdk_ecs::Client::new(target);
    let listed = ecs.list_service_deployments().cluster(cluster).service(service).send().await?;
    let mut briefs = listed.service_deployments.unwrap_or_default();
    briefs.sort_by_key(|b| std::cmp::Reverse(b.created_at().map(|t| (t.secs(), t.subsec_nanos()))));
    let arns: Vec<String> = briefs.iter().filter_map(|b| b.service_deployment_arn().map(str::to_owned)).collect();
    if arns.is_empty() {
        return Ok(Vec::new());
    }
    let out = ecs.describe_service_deployments().set_service_deployment_arns(Some(arns.clone())).send().await?;
    let mut found = out.service_deployments.unwrap_or_default();
    found.sort_by_key(|d| arns.iter().position(|a| Some(a.as_str()) == d.service_deployment_arn()));
    Ok(found)
}
