"""Online serving: replicas sharing one port under a supervisor, batching, caching, fallbacks.

``shopserve serve deploy.yaml`` runs it; ``DeploymentSpec`` describes it; the clients in
``shopserve.serve.client`` call it.
"""

from shopserve.serve.spec import DeploymentSpec, ModelSpec, load_deployment

__all__ = ["DeploymentSpec", "ModelSpec", "load_deployment"]
