from yinqi.cli import main

main()
