"""The deploy most teams would write instead of crossdeploy, for the benchmark (./scripts/bench).

A plain Python Lambda handler with boto3, for a CodePipeline Invoke action: it reads the build
artifact (with the function's own credentials, as crossdeploy does), assumes the target role,
updates the code, waits for the update, publishes a version, moves the alias, and answers the
job. The clients that do not depend on the job are made at init, as a careful team would; the
target account's client is made per job, with that job's credentials. No ledger, no lease, no
rollback record, no precondition: none of crossdeploy's guarantees. It runs under the benchmark's
Lambda Runtime API host through awslambdaric, the AWS Lambda Python runtime interface client.
"""

import io
import json
import os
import zipfile

import boto3
from botocore.config import Config

_s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))
_sts = boto3.client("sts")
_codepipeline = boto3.client("codepipeline")


def handler(event, context):
    job = event["CodePipeline.job"]
    job_id = job["id"]
    try:
        data = job["data"]
        params = json.loads(data["actionConfiguration"]["configuration"]["UserParameters"])
        location = data["inputArtifacts"][0]["location"]["s3Location"]
        artifact = _s3.get_object(Bucket=location["bucketName"], Key=location["objectKey"])["Body"].read()
        package = zipfile.ZipFile(io.BytesIO(artifact)).read(params["ArtifactPath"])
        credentials = _sts.assume_role(
            RoleArn=params["TargetRoleArn"],
            RoleSessionName=f"deploy-{job_id}"[:64],
            ExternalId=os.environ["DEPLOY_EXTERNAL_ID"],
        )["Credentials"]
        target = boto3.client(
            "lambda",
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
        function, alias = params["FunctionName"], params["Alias"]
        target.update_function_code(FunctionName=function, ZipFile=package)
        target.get_waiter("function_updated_v2").wait(FunctionName=function)
        version = target.publish_version(FunctionName=function)["Version"]
        target.update_alias(FunctionName=function, Name=alias, FunctionVersion=version)
        _codepipeline.put_job_success_result(jobId=job_id, outputVariables={"FunctionVersion": version})
        return {"jobId": job_id, "version": version}
    except Exception as error:
        _codepipeline.put_job_failure_result(
            jobId=job_id, failureDetails={"type": "JobFailed", "message": str(error)[:5000]}
        )
        raise
