"""The Helm chart, checked with real Helm (the Helm 4 Go library bundled by helm-python-sdk):
strict lint, render with the default and the production values, every rendered manifest
validated against the Kubernetes schemas (strict), and the properties ops rely on.

Run: python -m unittest discover -s charts/switchyard/tests (scripts/test does, in a venv with
tests/requirements.txt).
"""

import copy
import re
import unittest
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

CHART = Path(__file__).resolve().parent.parent
REPO = CHART.parent.parent
KUBERNETES = "1.33"
# Prometheus Operator kinds: no schema ships with kubernetes-validate; checked by shape below.
CRD_KINDS = {("monitoring.coreos.com/v1", "PodMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
SUBGRAPHS = ["accounts", "posts", "engagement", "notifications"]

# What `secrets.create: true` needs (not real secrets).
INLINE_SECRETS = {
    "secrets": {
        "create": True,
        "routerSecret": "test-router-secret-0123456789",
        "jwtSigningKey": "-----BEGIN PRIVATE KEY-----\ntest\n-----END PRIVATE KEY-----\n",
        "redisUrl": "redis://redis:6379",
        "cacheAdminToken": "test-cache-admin-token-0123",
        "shards": {name: f"postgres://pg-{name}-0/switchyard,postgres://pg-{name}-1/switchyard" for name in SUBGRAPHS},
    }
}


def deep_merge(base, override):
    """`helm -f a -f b`: maps merge, everything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def values_file(name):
    return helm.values_from_yaml((CHART / name).read_text())


def render(values=None, name="sy", namespace="switchyard"):
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values or {}, name=name, namespace=namespace)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {[d['metadata']['name'] for d in by_kind(docs, kind)]}"
    return found[0]


def pod_specs(docs):
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            yield doc, doc["spec"]["template"]["spec"]


class Lint(unittest.TestCase):
    def test_lint_is_clean_in_strict_mode_for_both_values_files(self):
        for values in ({}, values_file("values-production.yaml"), INLINE_SECRETS):
            report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBERNETES}.0")
            self.assertEqual(report["errors"], [], report)
            self.assertEqual(report["total_charts_linted"], 1, report)


class Render(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.default = render()
        cls.production = render(values_file("values-production.yaml"))
        cls.inline = render(INLINE_SECRETS)
        cls.renders = {"default": cls.default, "production": cls.production, "inline secrets": cls.inline}

    def test_every_manifest_is_valid_kubernetes_in_strict_mode(self):
        for label, docs in self.renders.items():
            for doc in docs:
                if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
                    continue
                with self.subTest(render=label, kind=doc["kind"], name=doc["metadata"]["name"]):
                    kubernetes_validate.validate(doc, KUBERNETES, strict=True)

    def test_operator_objects_have_their_shape(self):
        kinds = {d["kind"] for d in self.production}
        self.assertTrue({"PodMonitor", "PrometheusRule"} <= kinds, kinds)
        for doc in by_kind(self.production, "PodMonitor"):
            self.assertEqual(set(doc["spec"]), {"selector", "podMetricsEndpoints"})
        rule = by_kind(self.production, "PrometheusRule")[0]
        source = yaml.safe_load((CHART / "rules/switchyard.rules.yaml").read_text())
        self.assertEqual(rule["spec"], source["spec"], "the PrometheusRule carries the committed rules")

    def test_every_container_has_probes_resources_and_a_locked_down_security_context(self):
        for label, docs in self.renders.items():
            for doc, spec in pod_specs(docs):
                name = f"{label}: {doc['kind']}/{doc['metadata']['name']}"
                self.assertTrue(spec["securityContext"]["runAsNonRoot"], name)
                self.assertFalse(spec["automountServiceAccountToken"], name)
                for container in spec["containers"]:
                    if doc["kind"] == "Deployment":
                        self.assertIn("livenessProbe", container, name)
                        self.assertIn("readinessProbe", container, name)
                    resources = container["resources"]
                    self.assertIn("memory", resources["limits"], name)
                    self.assertIn("cpu", resources["requests"], name)
                    security = container["securityContext"]
                    self.assertTrue(security["readOnlyRootFilesystem"], name)
                    self.assertTrue(security["runAsNonRoot"], name)
                    self.assertFalse(security["allowPrivilegeEscalation"], name)
                    self.assertEqual(security["capabilities"]["drop"], ["ALL"], name)

    def test_config_maps_carry_exactly_the_committed_supergraph_and_manifest(self):
        for label, docs in self.renders.items():
            router = one(docs, "ConfigMap", "sy-switchyard-router")
            pq = one(docs, "ConfigMap", "sy-switchyard-persisted-queries")
            self.assertEqual(router["data"]["supergraph.graphql"], (REPO / "schema/supergraph.graphql").read_text(), label)
            self.assertEqual(pq["data"]["manifest.json"], (REPO / "persisted-queries/manifest.json").read_text(), label)
            self.assertEqual(pq["data"]["retired.yaml"], (REPO / "persisted-queries/retired.yaml").read_text(), label)

    def test_the_router_config_is_the_production_one_pointed_at_the_services(self):
        shipped = yaml.safe_load((REPO / "router/router.production.yaml").read_text())
        for label, docs in self.renders.items():
            config = yaml.safe_load(one(docs, "ConfigMap", "sy-switchyard-router")["data"]["router.yaml"])
            self.assertEqual(
                config["override_subgraph_url"],
                {name: f"http://sy-switchyard-{name}:{4001 + i}/graphql" for i, name in enumerate(SUBGRAPHS)},
                label,
            )
            services = {d["metadata"]["name"] for d in by_kind(docs, "Service")}
            for url in config["override_subgraph_url"].values():
                self.assertIn(url.split("//")[1].split(":")[0], services)
            for key in ("supergraph", "health_check", "telemetry", "limits"):
                self.assertEqual(config[key], shipped[key], f"{label}: {key}")
            self.assertEqual(config["plugins"]["switchyard.pipeline"], shipped["plugins"]["switchyard.pipeline"])
            self.assertFalse(config["supergraph"]["introspection"])
            self.assertEqual(config["plugins"]["switchyard.pipeline"]["persisted_queries"]["mode"], "enforce")
            self.assertFalse(config["plugins"]["switchyard.explorer"]["enabled"], label)

    def test_the_config_maps_are_mounted_as_directories_so_routers_see_updates(self):
        router = one(self.production, "Deployment", "sy-switchyard-router")
        mounts = router["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        self.assertTrue(all("subPath" not in m for m in mounts), mounts)
        self.assertIn("--hot-reload", router["spec"]["template"]["spec"]["containers"][0]["args"])

    def test_only_the_router_reaches_the_subgraphs(self):
        for label, docs in self.renders.items():
            policies = {d["metadata"]["name"]: d for d in by_kind(docs, "NetworkPolicy")}
            for name in SUBGRAPHS:
                policy = policies[f"sy-switchyard-{name}"]
                self.assertEqual(
                    policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"], f"subgraph-{name}"
                )
                self.assertEqual(policy["spec"]["policyTypes"], ["Ingress"])
                (rule,) = policy["spec"]["ingress"]
                pod_sources = [s["podSelector"]["matchLabels"] for s in rule["from"] if "podSelector" in s]
                self.assertEqual(
                    pod_sources,
                    [{"app.kubernetes.io/name": "switchyard", "app.kubernetes.io/instance": "sy",
                      "app.kubernetes.io/component": "router"}],
                    label,
                )
                others = [s for s in rule["from"] if "podSelector" not in s]
                for source in others:  # Prometheus, only when the PodMonitors are on
                    self.assertEqual(source, {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}})

    def test_a_values_typo_is_an_error_naming_the_key(self):
        for typo, key in (({"router": {"replcas": 3}}, "replcas"), ({"subgraphs": {"posts": {"prot": 1}}}, "prot"),
                          ({"imagee": {}}, "imagee"), ({"otlp": {"protocol": "udp"}}, "protocol")):
            with self.subTest(key=key):
                with self.assertRaises(Exception) as raised:
                    render(typo)
                self.assertIn(key, str(raised.exception))

    def test_inline_secrets_need_every_value(self):
        broken = copy.deepcopy(INLINE_SECRETS)
        del broken["secrets"]["routerSecret"]
        with self.assertRaises(Exception) as raised:
            render(broken)
        self.assertIn("secrets.routerSecret is required", str(raised.exception))
        secret = one(self.inline, "Secret", "sy-switchyard")
        self.assertEqual(secret["metadata"]["annotations"]["helm.sh/hook"], "pre-install,pre-upgrade")

    def test_production_example(self):
        docs = self.production
        hpa = one(docs, "HorizontalPodAutoscaler", "sy-switchyard-router")
        self.assertGreaterEqual(hpa["spec"]["minReplicas"], 3)
        router = one(docs, "Deployment", "sy-switchyard-router")
        spec = router["spec"]["template"]["spec"]
        self.assertNotIn("replicas", router["spec"], "the HPA owns the replica count")
        self.assertGreater(spec["terminationGracePeriodSeconds"], 30, "longer than the router's drain")
        self.assertEqual(len(spec["topologySpreadConstraints"]), 2)
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        self.assertEqual(env["SWITCHYARD_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"], "switchyard-production")
        self.assertEqual(env["SWITCHYARD_ENV"]["value"], "production")
        self.assertNotIn("SWITCHYARD_EXPLORER_ADMIN_TOKEN", env)
        one(docs, "PodDisruptionBudget", "sy-switchyard-router")
        one(docs, "Ingress", "sy-switchyard-router")
        job = one(docs, "Job", "sy-switchyard-migrate")
        self.assertEqual(job["metadata"]["annotations"]["helm.sh/hook"], "pre-install,pre-upgrade")
        for name in SUBGRAPHS:
            args = one(docs, "Deployment", f"sy-switchyard-{name}")["spec"]["template"]["spec"]["containers"][0]["args"]
            self.assertIn("--skip-migrations", args)
        self.assertEqual(len(by_kind(docs, "ConfigMap")), 2 + 3, "router, persisted queries, three dashboards")

    def test_the_push_worker_gets_its_providers_or_refuses_to_render_without_one(self):
        env = {e["name"]: e for e in one(self.production, "Deployment", "sy-switchyard-worker-push")["spec"]["template"]["spec"]["containers"][0]["env"]}
        self.assertEqual(env["SWITCHYARD_APNS_KEY"]["valueFrom"]["secretKeyRef"]["key"], "apns-key")
        self.assertEqual(env["SWITCHYARD_FCM_SERVICE_ACCOUNT"]["valueFrom"]["secretKeyRef"]["key"], "fcm-service-account")
        self.assertEqual(env["SWITCHYARD_PUSH_LOG_ONLY"]["value"], "false")
        with self.assertRaises(Exception) as raised:
            render({"push": {"logOnly": False}})
        self.assertIn("workers.push needs", str(raised.exception))

    def test_explorer_behind_its_token_when_enabled(self):
        docs = render(deep_merge(INLINE_SECRETS, {"router": {"explorer": {"enabled": True}}, "secrets": {"explorerAdminToken": "explorer-token-0123456789"}}))
        config = yaml.safe_load(one(docs, "ConfigMap", "sy-switchyard-router")["data"]["router.yaml"])
        explorer = config["plugins"]["switchyard.explorer"]
        self.assertTrue(explorer["enabled"])
        self.assertEqual(explorer["admin_token"], "${env.SWITCHYARD_EXPLORER_ADMIN_TOKEN}")

    def test_what_a_production_install_creates(self):
        counts = {}
        for doc in self.production:
            counts[doc["kind"]] = counts.get(doc["kind"], 0) + 1
        print("\nproduction install: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        self.assertEqual(counts["Deployment"], 1 + 4 + 5)


class Readme(unittest.TestCase):
    def test_the_chart_readme_lists_every_value(self):
        readme = (CHART / "README.md").read_text()
        values = yaml.safe_load((CHART / "values.yaml").read_text())

        def leaves(value, path):
            if isinstance(value, dict) and value and not path[-1:] in (["resources"], ["podSecurityContext"], ["securityContext"]):
                for key, child in value.items():
                    yield from leaves(child, path + [key])
            else:
                yield ".".join(path)

        missing = [key for key in leaves(values, []) if f"`{key}`" not in readme]
        self.assertEqual(missing, [], "keys of values.yaml missing from charts/switchyard/README.md")


class Dockerfile(unittest.TestCase):
    def test_the_image_is_multi_stage_non_root_and_copies_what_exists(self):
        text = (REPO / "Dockerfile").read_text()
        instructions = [line.strip() for line in re.sub(r"\\\n", " ", text).splitlines() if line.strip() and not line.strip().startswith("#")]
        stages = [i for i in instructions if i.upper().startswith("FROM ")]
        self.assertGreaterEqual(len(stages), 2, "multi-stage")
        runtime = instructions[instructions.index(stages[-1]):]
        users = [i for i in runtime if i.upper().startswith("USER ")]
        self.assertTrue(users and users[-1].split()[1] not in ("root", "0"), users)
        entry = [i for i in runtime if i.upper().startswith("ENTRYPOINT")]
        self.assertIn("switchyard", entry[-1])
        for instruction in instructions:
            if instruction.upper().startswith("COPY ") and "--from=" not in instruction:
                sources = [p for p in instruction.split()[1:-1] if not p.startswith("--")]
                for source in sources:
                    self.assertTrue((REPO / source).exists(), f"COPY {source}: missing")
        self.assertNotIn(":latest", text)


if __name__ == "__main__":
    unittest.main()
