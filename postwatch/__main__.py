from postwatch.cli import main

main()
