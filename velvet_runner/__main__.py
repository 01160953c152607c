from velvet_runner.cli import main

main()
