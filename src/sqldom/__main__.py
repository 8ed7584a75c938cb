from sqldom.entry import main

main()
