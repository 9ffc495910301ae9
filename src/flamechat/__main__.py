from flamechat.cli import main

main()
