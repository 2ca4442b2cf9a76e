#!/usr/bin/env python3
"""Checks that deploy/kubernetes/ agrees with the config it ships and with itself.

The ConfigMap's config.toml parses as TOML; in the Deployment and the CronJob the config file,
the secret files and the state file the config names lie under the mounts of the ConfigMap, the
Secret and the PersistentVolumeClaim; the health server's port (server.listen, from the
environment) is the container port and the liveness probe's; one replica, Recreate; the pod's
security context is locked down. Prints what it checked; exits 1 on the first mismatch.

    scripts/check-kubernetes.py deploy/kubernetes CONFIG_OUT

writes the ConfigMap's config.toml to CONFIG_OUT and, on stdout's last line, the value of
OKTA_PENDO_SYNC__SERVER__LISTEN (for scripts/test-kubernetes.sh to run `check --offline` with).
"""

import pathlib
import posixpath
import sys
import tomllib

import yaml

UID = 65532


class Mismatch(Exception):
    pass


def need(condition, message):
    if not condition:
        raise Mismatch(message)


def load(folder):
    docs = []
    for path in sorted(pathlib.Path(folder).glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    by_kind = {}
    for doc in docs:
        need(doc["kind"] not in by_kind, f"two objects of kind {doc['kind']}")
        by_kind[doc["kind"]] = doc
    for kind in ("ConfigMap", "PersistentVolumeClaim", "Deployment", "CronJob"):
        need(kind in by_kind, f"no {kind} in {folder}")
    return by_kind


def under(path, folder):
    """Whether path is a file inside folder (both absolute, normalised)."""
    return posixpath.dirname(posixpath.normpath(path)) == posixpath.normpath(folder)


def mount_of(container, volumes, predicate, what):
    """The volume and the container's mount of it, for the one volume satisfying predicate."""
    found = []
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if predicate(volume):
            found.append((volume, mount))
    need(len(found) == 1, f"{len(found)} mounts of {what}, not one")
    return found[0]


def file_in(volume_source, mount, path, what):
    need(under(path, mount["mountPath"]), f"{what} {path} is not under {mount['mountPath']}")
    name = posixpath.basename(path)
    items = [item["path"] for item in volume_source.get("items", [])]
    need(not items or name in items, f"{what} {name} is not among the volume's items {items}")
    return name


def check_pod(kind, pod, config, configmap, pvc, command):
    spec = pod["spec"]
    need(spec.get("automountServiceAccountToken") is False, f"{kind}: a service account token")
    security = spec.get("securityContext", {})
    need(security.get("runAsNonRoot") is True, f"{kind}: runAsNonRoot")
    need(security.get("runAsUser") == UID, f"{kind}: runAsUser is not {UID}")
    need(security.get("fsGroup") == UID, f"{kind}: fsGroup is not {UID}")
    need(
        security.get("seccompProfile", {}).get("type") == "RuntimeDefault",
        f"{kind}: seccompProfile",
    )
    containers = spec["containers"]
    need(len(containers) == 1, f"{kind}: one container")
    container = containers[0]
    locked = container.get("securityContext", {})
    need(locked.get("readOnlyRootFilesystem") is True, f"{kind}: readOnlyRootFilesystem")
    need(locked.get("allowPrivilegeEscalation") is False, f"{kind}: allowPrivilegeEscalation")
    need(locked.get("capabilities", {}).get("drop") == ["ALL"], f"{kind}: drop ALL")

    args = container["args"]
    need(args[-1] == command, f"{kind}: runs {args[-1]}, not {command}")
    need(args[0] == "--config", f"{kind}: no --config first")
    config_path = args[1]
    volumes = {v["name"]: v for v in spec["volumes"]}

    cm_volume, cm_mount = mount_of(
        container, volumes, lambda v: v.get("configMap", {}).get("name") == configmap["metadata"]["name"],
        f"{kind}: the ConfigMap",
    )
    name = file_in(cm_volume["configMap"], cm_mount, config_path, "--config")
    items = {i["path"]: i["key"] for i in cm_volume["configMap"].get("items", [])}
    need(items.get(name, name) in configmap["data"], f"{kind}: the ConfigMap has no {name}")

    secret_volume, secret_mount = mount_of(
        container, volumes, lambda v: "secret" in v, f"{kind}: a Secret"
    )
    for section, key in (("okta", "api_token_file"), ("pendo", "integration_key_file")):
        path = config[section][key]
        file_in(secret_volume["secret"], secret_mount, path, f"{section}.{key}")
        print(f"{kind}: {section}.{key} {path} is a file of the Secret mounted at {secret_mount['mountPath']}")

    _, state_mount = mount_of(
        container,
        volumes,
        lambda v: v.get("persistentVolumeClaim", {}).get("claimName") == pvc["metadata"]["name"],
        f"{kind}: the claim",
    )
    state = config["state"]["path"]
    need(under(state, state_mount["mountPath"]), f"{kind}: state.path {state} is not on the claim")
    need(not state_mount.get("readOnly"), f"{kind}: the state is mounted read-only")
    print(f"{kind}: state.path {state} is on the claim mounted at {state_mount['mountPath']}")
    print(f"{kind}: --config {config_path} is the ConfigMap's, mounted at {cm_mount['mountPath']}")
    return container


def check(folder, config_out):
    by_kind = load(folder)
    configmap = by_kind["ConfigMap"]
    text = configmap["data"]["config.toml"]
    config = tomllib.loads(text)
    need("server" not in config, "server.listen belongs to the Deployment's environment")
    pathlib.Path(config_out).write_text(text)
    print("ConfigMap: config.toml parses as TOML")
    pvc = by_kind["PersistentVolumeClaim"]

    deployment = by_kind["Deployment"]
    need(deployment["spec"]["replicas"] == 1, "Deployment: one replica")
    need(deployment["spec"]["strategy"]["type"] == "Recreate", "Deployment: Recreate")
    container = check_pod("Deployment", deployment["spec"]["template"], config, configmap, pvc, "run")

    env = container.get("env", [])
    names = [e["name"] for e in env]
    need("POD_IP" in names and "OKTA_PENDO_SYNC__SERVER__LISTEN" in names, "Deployment: env")
    need(names.index("POD_IP") < names.index("OKTA_PENDO_SYNC__SERVER__LISTEN"), "POD_IP first")
    pod_ip = env[names.index("POD_IP")]
    need(pod_ip["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP", "POD_IP: status.podIP")
    listen = env[names.index("OKTA_PENDO_SYNC__SERVER__LISTEN")]["value"]
    host, _, port = listen.rpartition(":")
    need(host == "$(POD_IP)", f"server.listen {listen} is not the pod's IP")
    ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
    need(int(port) in ports.values(), f"server.listen's port {port} is not a container port")
    probe = container["livenessProbe"]["httpGet"]
    need(probe["path"] == "/healthz", "the liveness probe asks /healthz")
    probe_port = ports.get(probe["port"], probe["port"])
    need(probe_port == int(port), f"the liveness probe's port {probe_port} is not {port}")
    print(f"Deployment: server.listen {listen}, container port {port} and the probe's port agree")

    cronjob = by_kind["CronJob"]
    need(cronjob["spec"]["concurrencyPolicy"] == "Forbid", "CronJob: concurrencyPolicy Forbid")
    check_pod("CronJob", cronjob["spec"]["jobTemplate"]["spec"]["template"], config, configmap, pvc, "sync")
    print("Deployment, CronJob: security context locked down")
    print(listen)


if __name__ == "__main__":
    try:
        check(sys.argv[1], sys.argv[2])
    except (Mismatch, KeyError, ValueError, tomllib.TOMLDecodeError) as e:
        print(f"check-kubernetes: FAIL: {e!r}", file=sys.stderr)
        sys.exit(1)
