"""`python -m zenskar_devtools.zenskar_api serve ...`: the `zenskar-pipeline zenskar-api` commands without
the product's command in front (how `LocalZenskarApi.start_process` runs the server)."""

from zenskar_devtools.cli import zenskar_api

if __name__ == "__main__":
    zenskar_api(prog_name="python -m zenskar_devtools.zenskar_api")
