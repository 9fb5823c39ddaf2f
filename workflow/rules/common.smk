# Helpers shared by the rules: a platform's effective settings (so a change re-runs what depends on it)
# and the package modules each step runs (so a code change re-runs it, as DVC's deps do).

wildcard_constraints:
    platform="|".join(PLATFORMS) if PLATFORMS else "none",


def platform_settings(wildcards):
    return transrec_params.platform_config(config, wildcards.platform)


PKG = os.path.relpath(os.path.join(workflow.basedir, "src", "transrec"))  # "src/transrec" from the checkout
