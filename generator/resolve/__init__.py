"""The blueprint rules that need the whole file, and the resolution that follows them.

``resolve`` takes a shape-checked ``BlueprintSpec`` and the ``SourceDoc`` it came from,
checks every cross-reference (schemas, ports, connections, routes, cycles), and returns
the resolved ``Blueprint``; every problem found is reported at once, each with its line.
The rules are grouped by what they resolve: ``schemas``, ``components``,
``connections``, ``keys`` and ``warnings``, over the shared state of ``checks``.
"""

from __future__ import annotations

from ..blueprint import Blueprint
from ..errors import BlueprintError
from ..model import BlueprintSpec
from ..yaml_source import SourceDoc
from .checks import did_you_mean as did_you_mean
from .components import ComponentRules
from .connections import ConnectionRules
from .keys import KeyRules
from .schemas import SchemaRules
from .schemas import default_checker as default_checker
from .warnings import WarningRules
from .windows import window_schemas


def resolve(spec: BlueprintSpec, doc: SourceDoc) -> Blueprint:
    """Check the graph rules and resolve ``spec``; raise BlueprintError listing all problems."""
    # a window's output schema is made from the blueprint before the rest resolves
    spec, made = window_schemas(spec)
    resolver = _Resolver(spec, doc)
    resolver.made_schemas = made
    return resolver.run()


class _Resolver(SchemaRules, ComponentRules, ConnectionRules, KeyRules, WarningRules):
    def run(self) -> Blueprint:
        schemas = self.schemas()
        components = self.components()
        self.schema_keys(schemas)
        connections = self.keyed(self.connections(components), schemas)
        components = self.windows(components, connections, schemas)
        components = self.joins(components, connections, schemas)
        self.stateful(components, connections, schemas)
        self.unconnected_inputs(components)
        self.cycles(connections)
        self.redis(connections)
        self.unused(schemas, components, connections)
        if self.problems:
            raise BlueprintError(self.problems)
        pii = {name.lower() for name in self.spec.defaults.pii_fields}
        pii |= {f.name.lower() for s in schemas for f in s.fields if f.pii}
        return Blueprint(
            name=self.spec.name,
            description=self.spec.description,
            version=self.spec.version,
            schemas=schemas,
            components=tuple(components.values()),
            connections=connections,
            pii_fields=tuple(sorted(pii)),
            warnings=tuple(sorted(self.warnings)),
            forbidden_imports=tuple(self.spec.forbidden_imports),
            trusted_proxies=tuple(dict.fromkeys(self.spec.defaults.trusted_proxies)),
            transport=self.spec.transport,
            redis_url=self.spec.defaults.redis_url,
            max_retries=self.spec.defaults.max_retries,
            claim_idle_ms=self.spec.defaults.claim_idle_ms,
            ci_portwright=self.spec.ci.portwright,
            ci_index_url=self.spec.ci.index_url,
        )
