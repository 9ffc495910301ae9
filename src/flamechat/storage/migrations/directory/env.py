from flamechat.storage.migrations.env_common import run

run()
