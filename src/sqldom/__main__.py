from sqldom.cli import main

main()
