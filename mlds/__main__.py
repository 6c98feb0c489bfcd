from mlds.cli import main

main()
